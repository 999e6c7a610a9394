/*
 * fake_nvml.c — a fake libnvidia-ml.so.1 for testing gpuscope's NVML backend without a GPU.
 *
 * It exports exactly the (versioned) NVML symbols gpuscope-probe's NvmlBackend calls through nvml-wrapper 0.13,
 * with the C ABI nvml-wrapper-sys expects. Values come from a key=value config file; any value can instead be an
 * NVML error, and any symbol can be left out at compile time.
 *
 * Build (tests do this through gpuscope_tests::fake_nvml::build_fake_nvml):
 *     cc -shared -fPIC -fvisibility=hidden -O1 -o libnvidia-ml.so.1 fake_nvml.c -ldl
 *     cc ... -DFAKE_NVML_OMIT_nvmlDeviceGetFieldValues ...   # a variant lacking that symbol
 *
 * Config: read at every nvmlInit_v2 from the file named by env FAKE_NVML_CONFIG, or else from `fake-nvml.conf`
 * beside the loaded library (so parallel tests, each with its own copy of the library, need no environment).
 * One `key=value` per line; `#` starts a comment. Missing keys take H100-like defaults.
 *   device_count=2                     driver_version=570.86.15 (keep < 580.82: nvml-wrapper renumbers field ids
 *   nvml_version=12.570.86.15          251-273 for newer drivers)    cuda_driver_version=12080 (= 12.8)
 *   init=driver_not_loaded             make nvmlInit_v2 itself fail
 *   gpu.<i>.<key>=<value>, keys:
 *     handle (error only)  index  uuid  name  serial  pci_bus_id (e.g. 00000000:3B:00.0)  pci_device_id
 *     memory_total_mib  memory_used_mib  temperature  power_usage_mw  power_limit_mw
 *     utilization_gpu  utilization_memory  clock_graphics  clock_sm  clock_mem
 *     throttle_reasons (NVML bitmask, 0x.. allowed)  ecc_mode  ecc_pending (0/1)
 *     ecc_volatile_corrected  ecc_volatile_uncorrected  ecc_aggregate_corrected  ecc_aggregate_uncorrected
 *     retired_pages_sbe  retired_pages_dbe (page counts)  retired_pages_pending (0/1)
 *     remapped_rows (error only: all four fields)  remapped_rows_correctable  remapped_rows_uncorrectable
 *     remapped_rows_pending  remapped_rows_failure   (NVML fields 142-145)
 *     recovery_action (NVML field 230, 0..7)  field_values (error only: the whole nvmlDeviceGetFieldValues call)
 *     mig_mode  mig_pending (0/1)  mig_max_devices  mig_devices (configured MIG devices)
 *     nvlinks (comma list of link states, e.g. 1,1,0,1; its length is the link count)
 *     supported_events (bitmask, default XID|SBE|DBE)  register_events (error only)
 *     lost=1  (every call on the GPU except getting its handle returns NVML_ERROR_GPU_IS_LOST)
 *   Any value may be an error instead: not_supported, invalid_arg, no_permission, not_found, gpu_lost,
 *   function_not_found, driver_not_loaded, unknown, or error:<number>.
 *
 * XID events: nvmlEventSetWait_v2 reads lines `<gpu_index> <xid_code>` from the file named by env FAKE_NVML_EVENTS,
 * or else `fake-nvml.events` beside the library; each event set reads the file from its start, each complete line
 * once, and reports only GPUs registered for critical XID events. No line within the timeout: NVML_ERROR_TIMEOUT.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_MEMORY = 20,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define FAKE_MAX_GPUS 64
#define FAKE_MAX_MIG 8
#define FAKE_MAX_LINKS 18
#define FAKE_MAX_ENTRIES 2048
#define FAKE_EVENT_XID 8ULL
#define FAKE_EVENT_SBE 1ULL
#define FAKE_EVENT_DBE 2ULL

/* Handles are pointers into these arrays: a GPU, or one of its MIG devices. */
struct fake_device {
    int gpu;
    int mig; /* -1 for the full GPU */
};
typedef struct fake_device *nvmlDevice_t;

struct fake_event_set {
    unsigned long long registered[FAKE_MAX_GPUS];
    long offset;
};
typedef struct fake_event_set *nvmlEventSet_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef union {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

/* ---------------------------------------------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------------------------------------------- */

struct entry {
    char key[128];
    char value[256];
};

static struct entry g_entries[FAKE_MAX_ENTRIES];
static int g_entry_count;
static int g_initialized;
static struct fake_device g_gpus[FAKE_MAX_GPUS];
static struct fake_device g_migs[FAKE_MAX_GPUS][FAKE_MAX_MIG];

/* Default PCI buses of an 8-GPU HGX H100 board, so a config with only device_count looks real. */
static const unsigned int g_default_buses[8] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}

/* A file beside this library: the directory of the .so that holds this function, found with dladdr. */
static int sidecar_path(const char *name, char *out, size_t len) {
    Dl_info info;
    if (dladdr((void *)&sidecar_path, &info) == 0 || info.dli_fname == NULL) return 0;
    const char *slash = strrchr(info.dli_fname, '/');
    if (slash == NULL) return snprintf(out, len, "%s", name) < (int)len;
    int dir_len = (int)(slash - info.dli_fname);
    return snprintf(out, len, "%.*s/%s", dir_len, info.dli_fname, name) < (int)len;
}

static int resolve_path(const char *env, const char *sidecar, char *out, size_t len) {
    const char *from_env = getenv(env);
    if (from_env != NULL && from_env[0] != '\0') return snprintf(out, len, "%s", from_env) < (int)len;
    return sidecar_path(sidecar, out, len);
}

static void load_config(void) {
    g_entry_count = 0;
    char path[4096];
    if (!resolve_path("FAKE_NVML_CONFIG", "fake-nvml.conf", path, sizeof path)) return;
    FILE *f = fopen(path, "r");
    if (f == NULL) return; /* no config: every value takes its default */
    char line[512];
    while (fgets(line, sizeof line, f) != NULL && g_entry_count < FAKE_MAX_ENTRIES) {
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        char *eq = strchr(line, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        char *key = trim(line);
        char *value = trim(eq + 1);
        if (*key == '\0') continue;
        /* Later lines win, so a test can append an override. */
        int slot = g_entry_count;
        for (int i = 0; i < g_entry_count; i++) {
            if (strcmp(g_entries[i].key, key) == 0) slot = i;
        }
        snprintf(g_entries[slot].key, sizeof g_entries[slot].key, "%s", key);
        snprintf(g_entries[slot].value, sizeof g_entries[slot].value, "%s", value);
        if (slot == g_entry_count) g_entry_count++;
    }
    fclose(f);
}

static const char *lookup(const char *key) {
    for (int i = 0; i < g_entry_count; i++) {
        if (strcmp(g_entries[i].key, key) == 0) return g_entries[i].value;
    }
    return NULL;
}

static const char *gpu_lookup(int gpu, const char *key) {
    char full[160];
    snprintf(full, sizeof full, "gpu.%d.%s", gpu, key);
    return lookup(full);
}

/* The NVML error a value names, or NVML_SUCCESS when it is a plain value. */
static nvmlReturn_t error_token(const char *value) {
    if (value == NULL) return NVML_SUCCESS;
    static const struct {
        const char *name;
        nvmlReturn_t code;
    } tokens[] = {
        {"not_supported", NVML_ERROR_NOT_SUPPORTED},
        {"invalid_arg", NVML_ERROR_INVALID_ARGUMENT},
        {"no_permission", NVML_ERROR_NO_PERMISSION},
        {"not_found", NVML_ERROR_NOT_FOUND},
        {"gpu_lost", NVML_ERROR_GPU_IS_LOST},
        {"function_not_found", NVML_ERROR_FUNCTION_NOT_FOUND},
        {"driver_not_loaded", NVML_ERROR_DRIVER_NOT_LOADED},
        {"unknown", NVML_ERROR_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        if (strcmp(value, tokens[i].name) == 0) return tokens[i].code;
    }
    if (strncmp(value, "error:", 6) == 0) return (nvmlReturn_t)strtol(value + 6, NULL, 0);
    return NVML_SUCCESS;
}

static nvmlReturn_t parse_u64(const char *key, const char *value, unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 0);
    if (errno != 0 || end == value || *trim(end) != '\0') {
        fprintf(stderr, "fake-nvml: %s=%s is neither a number nor an error name\n", key, value);
        return NVML_ERROR_UNKNOWN;
    }
    *out = v;
    return NVML_SUCCESS;
}

static nvmlReturn_t sys_u64(const char *key, unsigned long long def, unsigned long long *out) {
    const char *value = lookup(key);
    nvmlReturn_t err = error_token(value);
    if (err != NVML_SUCCESS) return err;
    if (value == NULL) {
        *out = def;
        return NVML_SUCCESS;
    }
    return parse_u64(key, value, out);
}

static nvmlReturn_t gpu_u64(int gpu, const char *key, unsigned long long def, unsigned long long *out) {
    const char *value = gpu_lookup(gpu, key);
    nvmlReturn_t err = error_token(value);
    if (err != NVML_SUCCESS) return err;
    if (value == NULL) {
        *out = def;
        return NVML_SUCCESS;
    }
    return parse_u64(key, value, out);
}

/* A GPU value that is only ever an error (e.g. `remapped_rows=not_supported` covering four fields). */
static nvmlReturn_t gpu_error(int gpu, const char *key) {
    return error_token(gpu_lookup(gpu, key));
}

static nvmlReturn_t copy_string(const char *value, char *out, unsigned int len) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

static nvmlReturn_t gpu_string(int gpu, const char *key, const char *def, char *out, unsigned int len) {
    const char *value = gpu_lookup(gpu, key);
    nvmlReturn_t err = error_token(value);
    if (err != NVML_SUCCESS) return err;
    return copy_string(value != NULL ? value : def, out, len);
}

static int device_count(void) {
    unsigned long long n = 1;
    if (sys_u64("device_count", 1, &n) != NVML_SUCCESS || n > FAKE_MAX_GPUS) return 0;
    return (int)n;
}

/* Validates a handle (full GPU only) and applies `lost=1`; on success *gpu is its index. */
static nvmlReturn_t check_device(nvmlDevice_t device, int *gpu) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || device < &g_gpus[0] || device >= &g_gpus[FAKE_MAX_GPUS]) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu >= device_count()) return NVML_ERROR_INVALID_ARGUMENT;
    const char *lost = gpu_lookup(device->gpu, "lost");
    if (lost != NULL && strcmp(lost, "1") == 0) return NVML_ERROR_GPU_IS_LOST;
    *gpu = device->gpu;
    return NVML_SUCCESS;
}

#define CHECK(expr)                                                                                                  \
    do {                                                                                                             \
        nvmlReturn_t rc_ = (expr);                                                                                   \
        if (rc_ != NVML_SUCCESS) return rc_;                                                                         \
    } while (0)

/* ---------------------------------------------------------------------------------------------------------------
 * Init, shutdown, errors, system
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlInit_v2
EXPORT nvmlReturn_t nvmlInit_v2(void) {
    load_config();
    CHECK(error_token(lookup("init")));
    for (int i = 0; i < FAKE_MAX_GPUS; i++) {
        g_gpus[i].gpu = i;
        g_gpus[i].mig = -1;
        for (int m = 0; m < FAKE_MAX_MIG; m++) {
            g_migs[i][m].gpu = i;
            g_migs[i][m].mig = m;
        }
    }
    g_initialized = 1;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlShutdown
EXPORT nvmlReturn_t nvmlShutdown(void) {
    g_initialized = 0;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlErrorString
EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlSystemGetDriverVersion
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    const char *value = lookup("driver_version");
    CHECK(error_token(value));
    return copy_string(value != NULL ? value : "570.86.15", version, length);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlSystemGetNVMLVersion
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    const char *value = lookup("nvml_version");
    CHECK(error_token(value));
    return copy_string(value != NULL ? value : "12.570.86.15", version, length);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlSystemGetCudaDriverVersion_v2
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cuda_driver_version) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (cuda_driver_version == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(sys_u64("cuda_driver_version", 12080, &v));
    *cuda_driver_version = (int)v;
    return NVML_SUCCESS;
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Devices: count, handles, identity
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetCount_v2
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long n = 0;
    CHECK(sys_u64("device_count", 1, &n));
    if (n > FAKE_MAX_GPUS) return NVML_ERROR_UNKNOWN;
    *count = (unsigned int)n;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetHandleByIndex_v2
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || index >= (unsigned int)device_count()) return NVML_ERROR_INVALID_ARGUMENT;
    CHECK(gpu_error((int)index, "handle"));
    *device = &g_gpus[index];
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetIndex
EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (index == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "index", (unsigned long long)gpu, &v));
    *index = (unsigned int)v;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetUUID
EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    int gpu;
    CHECK(check_device(device, &gpu));
    char def[64];
    snprintf(def, sizeof def, "GPU-fa4e%04x-0000-4000-8000-%012x", gpu, gpu);
    return gpu_string(gpu, "uuid", def, uuid, length);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetName
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    int gpu;
    CHECK(check_device(device, &gpu));
    return gpu_string(gpu, "name", "NVIDIA H100 80GB HBM3", name, length);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetSerial
EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
    int gpu;
    CHECK(check_device(device, &gpu));
    char def[32];
    snprintf(def, sizeof def, "165022%07d", gpu);
    return gpu_string(gpu, "serial", def, serial, length);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetPciInfo_v3
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    char def[32];
    snprintf(def, sizeof def, "00000000:%02X:00.0", gpu < 8 ? g_default_buses[gpu] : (unsigned int)(0x80 + gpu));
    const char *value = gpu_lookup(gpu, "pci_bus_id");
    CHECK(error_token(value));
    const char *bus_id = value != NULL ? value : def;
    unsigned int domain = 0, bus = 0, dev = 0, fn = 0;
    if (sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) < 3) {
        fprintf(stderr, "fake-nvml: gpu.%d.pci_bus_id=%s is not domain:bus:device.function\n", gpu, bus_id);
        return NVML_ERROR_UNKNOWN;
    }
    unsigned long long device_id = 0;
    CHECK(gpu_u64(gpu, "pci_device_id", 0x233010DEULL, &device_id));
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", domain & 0xffff, bus, dev, fn);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = (unsigned int)device_id;
    pci->pciSubSystemId = 0x16C110DE;
    return NVML_SUCCESS;
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Telemetry
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetMemoryInfo_v2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    /* Real NVML checks NVML_STRUCT_VERSION(Memory, 2); so does the fake, to catch ABI drift. */
    if (memory->version != (unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24))) {
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    unsigned long long total = 0, used = 0;
    CHECK(gpu_u64(gpu, "memory_total_mib", 81559, &total));
    CHECK(gpu_u64(gpu, "memory_used_mib", 0, &used));
    memory->total = total << 20;
    memory->used = used << 20;
    memory->reserved = 0;
    memory->free = used > total ? 0 : (total - used) << 20;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetTemperature
EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (sensor != 0 || temp == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "temperature", 35, &v));
    *temp = (unsigned int)v;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetPowerUsage
EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (power == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "power_usage_mw", 71000, &v));
    *power = (unsigned int)v;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetEnforcedPowerLimit
EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (limit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "power_limit_mw", 700000, &v));
    *limit = (unsigned int)v;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetUtilizationRates
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (utilization == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long g = 0, m = 0;
    CHECK(gpu_u64(gpu, "utilization_gpu", 0, &g));
    CHECK(gpu_u64(gpu, "utilization_memory", 0, &m));
    utilization->gpu = (unsigned int)g;
    utilization->memory = (unsigned int)m;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetClockInfo
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (clock == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    switch (type) {
    case 0: CHECK(gpu_u64(gpu, "clock_graphics", 1980, &v)); break;
    case 1: CHECK(gpu_u64(gpu, "clock_sm", 1980, &v)); break;
    case 2: CHECK(gpu_u64(gpu, "clock_mem", 2619, &v)); break;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
    *clock = (unsigned int)v;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetCurrentClocksThrottleReasons
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (reasons == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return gpu_u64(gpu, "throttle_reasons", 0x1 /* GPU idle */, reasons);
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * ECC, retired pages, field values (remapped rows 142-145, recovery action 230)
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetEccMode
EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, int *current, int *pending) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (current == NULL || pending == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long cur = 0, pend = 0;
    CHECK(gpu_u64(gpu, "ecc_mode", 1, &cur));
    CHECK(gpu_u64(gpu, "ecc_pending", cur, &pend));
    *current = cur != 0;
    *pending = pend != 0;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetTotalEccErrors
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int error_type, int counter_type,
                                               unsigned long long *count) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (count == NULL || error_type < 0 || error_type > 1 || counter_type < 0 || counter_type > 1) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    /* Like the driver: counters need ECC enabled. */
    unsigned long long mode = 1;
    CHECK(gpu_u64(gpu, "ecc_mode", 1, &mode));
    if (mode == 0) return NVML_ERROR_NOT_SUPPORTED;
    static const char *keys[2][2] = {
        {"ecc_volatile_corrected", "ecc_aggregate_corrected"},
        {"ecc_volatile_uncorrected", "ecc_aggregate_uncorrected"},
    };
    return gpu_u64(gpu, keys[error_type][counter_type], 0, count);
}
#endif

static nvmlReturn_t retired_count(int gpu, int cause, unsigned long long *n) {
    if (cause == 0) return gpu_u64(gpu, "retired_pages_sbe", 0, n);
    if (cause == 1) return gpu_u64(gpu, "retired_pages_dbe", 0, n);
    return NVML_ERROR_INVALID_ARGUMENT;
}

/* nvml-wrapper asks this one for the count (count=0), then _v2 for the pages. */
#ifndef FAKE_NVML_OMIT_nvmlDeviceGetRetiredPages
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, int cause, unsigned int *page_count,
                                             unsigned long long *addresses) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (page_count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long n = 0;
    CHECK(retired_count(gpu, cause, &n));
    unsigned int room = *page_count;
    *page_count = (unsigned int)n;
    if (room < n) return NVML_ERROR_INSUFFICIENT_SIZE;
    for (unsigned int i = 0; i < n && addresses != NULL; i++) addresses[i] = 0x100000ULL * (i + 1);
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetRetiredPages_v2
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t device, int cause, unsigned int *page_count,
                                                unsigned long long *addresses, unsigned long long *timestamps) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (page_count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long n = 0;
    CHECK(retired_count(gpu, cause, &n));
    unsigned int room = *page_count;
    *page_count = (unsigned int)n;
    if (room < n) return NVML_ERROR_INSUFFICIENT_SIZE;
    for (unsigned int i = 0; i < n; i++) {
        if (addresses != NULL) addresses[i] = 0x100000ULL * (i + 1);
        if (timestamps != NULL) timestamps[i] = 1760000000ULL + i;
    }
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetRetiredPagesPendingStatus
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, int *is_pending) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (is_pending == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "retired_pages_pending", 0, &v));
    *is_pending = v != 0;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetFieldValues
static long long now_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int values_count, nvmlFieldValue_t *values) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (values == NULL || values_count <= 0) return NVML_ERROR_INVALID_ARGUMENT;
    CHECK(gpu_error(gpu, "field_values"));
    for (int i = 0; i < values_count; i++) {
        nvmlFieldValue_t *v = &values[i];
        const char *key = NULL;
        nvmlReturn_t group = NVML_SUCCESS;
        switch (v->fieldId) {
        case 142: key = "remapped_rows_correctable"; group = gpu_error(gpu, "remapped_rows"); break;
        case 143: key = "remapped_rows_uncorrectable"; group = gpu_error(gpu, "remapped_rows"); break;
        case 144: key = "remapped_rows_pending"; group = gpu_error(gpu, "remapped_rows"); break;
        case 145: key = "remapped_rows_failure"; group = gpu_error(gpu, "remapped_rows"); break;
        case 230: key = "recovery_action"; break;
        default: break;
        }
        v->timestamp = now_usec();
        v->latencyUsec = 3;
        v->valueType = 1; /* NVML_VALUE_TYPE_UNSIGNED_INT, as the driver reports these fields */
        if (key == NULL) {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            continue;
        }
        if (group != NVML_SUCCESS) {
            v->nvmlReturn = group;
            continue;
        }
        unsigned long long value = 0;
        v->nvmlReturn = gpu_u64(gpu, key, 0, &value);
        v->value.uiVal = (unsigned int)value;
    }
    return NVML_SUCCESS;
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * MIG and NVLink
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetMigMode
EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (current == NULL || pending == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long cur = 0, pend = 0;
    CHECK(gpu_u64(gpu, "mig_mode", 0, &cur));
    CHECK(gpu_u64(gpu, "mig_pending", cur, &pend));
    *current = (unsigned int)cur;
    *pending = (unsigned int)pend;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetMaxMigDeviceCount
EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    CHECK(gpu_u64(gpu, "mig_max_devices", 7, &v));
    *count = (unsigned int)(v > FAKE_MAX_MIG ? FAKE_MAX_MIG : v);
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetMigDeviceHandleByIndex
EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                       nvmlDevice_t *mig_device) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (mig_device == NULL || index >= FAKE_MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long mode = 0, configured = 0;
    CHECK(gpu_u64(gpu, "mig_mode", 0, &mode));
    if (mode == 0) return NVML_ERROR_NOT_SUPPORTED;
    CHECK(gpu_u64(gpu, "mig_devices", 0, &configured));
    if (index >= configured) return NVML_ERROR_NOT_FOUND;
    *mig_device = &g_migs[gpu][index];
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetNvLinkState
EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, int *is_active) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (is_active == NULL || link >= FAKE_MAX_LINKS) return NVML_ERROR_INVALID_ARGUMENT;
    const char *value = gpu_lookup(gpu, "nvlinks");
    CHECK(error_token(value));
    /* Default: an HGX H100's 18 links, all up. */
    const char *states = value != NULL ? value : "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1";
    unsigned int i = 0;
    for (const char *p = states; *p != '\0';) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == '\0') break;
        if (i == link) {
            *is_active = *p == '1';
            return NVML_SUCCESS;
        }
        while (*p != '\0' && *p != ',') p++;
        i++;
    }
    return NVML_ERROR_INVALID_ARGUMENT; /* past the GPU's last link, as the driver answers */
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_OMIT_nvmlDeviceGetSupportedEventTypes
EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *event_types) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (event_types == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    return gpu_u64(gpu, "supported_events", FAKE_EVENT_XID | FAKE_EVENT_SBE | FAKE_EVENT_DBE, event_types);
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlEventSetCreate
EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    struct fake_event_set *s = calloc(1, sizeof *s);
    if (s == NULL) return NVML_ERROR_MEMORY;
    *set = s;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlDeviceRegisterEvents
EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long event_types,
                                            nvmlEventSet_t set) {
    int gpu;
    CHECK(check_device(device, &gpu));
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    CHECK(gpu_error(gpu, "register_events"));
    unsigned long long supported = 0;
    CHECK(gpu_u64(gpu, "supported_events", FAKE_EVENT_XID | FAKE_EVENT_SBE | FAKE_EVENT_DBE, &supported));
    if ((event_types & ~supported) != 0) return NVML_ERROR_NOT_SUPPORTED;
    set->registered[gpu] |= event_types;
    return NVML_SUCCESS;
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlEventSetWait_v2
static double monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The next complete line of the events file past the set's offset; 1 when one was read. */
static int next_event_line(struct fake_event_set *set, const char *path, char *line, size_t len) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    int got = 0;
    if (fseek(f, set->offset, SEEK_SET) == 0 && fgets(line, (int)len, f) != NULL) {
        size_t n = strlen(line);
        /* A line still being written (no newline yet) waits for the next poll. */
        if (n > 0 && line[n - 1] == '\n') {
            set->offset += (long)n;
            got = 1;
        }
    }
    fclose(f);
    return got;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
    if (set == NULL || data == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    char path[4096];
    int have_path = resolve_path("FAKE_NVML_EVENTS", "fake-nvml.events", path, sizeof path);
    double deadline = monotonic_ms() + timeout_ms;
    for (;;) {
        char line[256];
        while (have_path && next_event_line(set, path, line, sizeof line)) {
            int gpu = -1;
            unsigned long long code = 0;
            if (sscanf(line, "%d %llu", &gpu, &code) != 2 || gpu < 0 || gpu >= device_count()) {
                fprintf(stderr, "fake-nvml: ignoring event line %s", line);
                continue;
            }
            if ((set->registered[gpu] & FAKE_EVENT_XID) == 0) continue;
            memset(data, 0, sizeof *data);
            data->device = &g_gpus[gpu];
            data->eventType = FAKE_EVENT_XID;
            data->eventData = code;
            data->gpuInstanceId = 0xFFFFFFFFu;
            data->computeInstanceId = 0xFFFFFFFFu;
            return NVML_SUCCESS;
        }
        if (monotonic_ms() >= deadline) return NVML_ERROR_TIMEOUT;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}
#endif

#ifndef FAKE_NVML_OMIT_nvmlEventSetFree
EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    free(set);
    return NVML_SUCCESS;
}
#endif
