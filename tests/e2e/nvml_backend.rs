//! The probe's real NVML backend against the fake libnvidia-ml.so.1 built from node-probe/fake-nvml: inventory,
//! unsupported fields, missing symbols, lost GPUs, startup errors and XID events. No GPU and no Kubernetes needed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gpuscope_crds::gpu_node_status::{
    Clocks, EccCounters, GpuInfo, GpuMemory, MigInfo, NvLinks, RecoveryActionStatus, RemappedRows, RetiredPages,
    Utilization, XidSource,
};
use gpuscope_probe::backend::{BackendError, GpuBackend, LostGpu, NodeSnapshot, NvmlBackend, NvmlConfig, NvmlXidEvent};
use gpuscope_tests::fake_nvml::FakeNvml;
use tempfile::TempDir;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Two GPUs with every value set: an H100 (no MIG, 4 NVLinks) and an A100 with MIG on.
const TWO_GPUS: &str = "
driver_version=570.86.15
nvml_version=12.570.86.15
cuda_driver_version=12080
device_count=2

gpu.0.uuid=GPU-5a4c2e1b-8d3f-4e7a-b6c0-9f1d2a8e5c73
gpu.0.name=NVIDIA H100 80GB HBM3
gpu.0.serial=1654922018862
gpu.0.pci_bus_id=00000000:3B:00.0
gpu.0.memory_total_mib=81559
gpu.0.memory_used_mib=74213
gpu.0.temperature=91
gpu.0.power_usage_mw=651600
gpu.0.power_limit_mw=700000
gpu.0.utilization_gpu=98
gpu.0.utilization_memory=61
gpu.0.clock_sm=1755
gpu.0.clock_mem=2619
gpu.0.throttle_reasons=0x64          # SwPowerCap | SwThermalSlowdown | HwThermalSlowdown
gpu.0.ecc_mode=1
gpu.0.ecc_volatile_corrected=3
gpu.0.ecc_volatile_uncorrected=1
gpu.0.ecc_aggregate_corrected=17
gpu.0.ecc_aggregate_uncorrected=2
gpu.0.retired_pages_sbe=2
gpu.0.retired_pages_dbe=1
gpu.0.retired_pages_pending=1
gpu.0.remapped_rows_correctable=4
gpu.0.remapped_rows_uncorrectable=1
gpu.0.remapped_rows_pending=1
gpu.0.remapped_rows_failure=0
gpu.0.recovery_action=2
gpu.0.mig_mode=0
gpu.0.mig_pending=0
gpu.0.nvlinks=1,1,0,1

gpu.1.uuid=GPU-7d2b5f90-c84a-4e13-9f6b-a1e3d7c05b82
gpu.1.name=NVIDIA A100-SXM4-80GB
gpu.1.serial=1564520034433
gpu.1.pci_bus_id=00000000:47:00.0
gpu.1.memory_total_mib=81920
gpu.1.memory_used_mib=11264
gpu.1.temperature=41
gpu.1.power_usage_mw=118400
gpu.1.power_limit_mw=400000
gpu.1.throttle_reasons=0
gpu.1.ecc_mode=0
gpu.1.mig_mode=1
gpu.1.mig_pending=1
gpu.1.mig_max_devices=7
gpu.1.mig_devices=3
gpu.1.nvlinks=1,1,1,1,1,1,1,1,1,1,1,1
";

/// A fake NVML in a fresh directory (kept alive by the returned TempDir) and a backend opened on it.
fn open(omit: &[&str], config: &str) -> Result<(TempDir, FakeNvml, NvmlBackend), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let fake = FakeNvml::build(dir.path(), omit, config)?;
    let backend = NvmlBackend::open(NvmlConfig { library_path: fake.library().to_path_buf() })?;
    Ok((dir, fake, backend))
}

fn gpu(snapshot: &NodeSnapshot, index: u32) -> Result<&GpuInfo, String> {
    snapshot.gpus.iter().find(|g| g.index == index).ok_or_else(|| format!("no GPU {index} in {snapshot:#?}"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The next event within `limit`, polling (the receiver is fed by a plain thread; no runtime needed).
fn recv_within(receiver: &mut mpsc::Receiver<NvmlXidEvent>, limit: Duration) -> Option<NvmlXidEvent> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(event) = receiver.try_recv() {
            return Some(event);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn full_inventory_equals_the_configured_values() -> TestResult {
    let (_dir, _fake, mut backend) = open(&[], TWO_GPUS)?;
    let snapshot = backend.snapshot()?;

    assert_eq!(snapshot.driver_version.as_deref(), Some("570.86.15"));
    assert_eq!(snapshot.cuda_driver_version.as_deref(), Some("12.8"));
    assert_eq!(snapshot.nvml_version.as_deref(), Some("12.570.86.15"));
    assert_eq!(snapshot.unsupported_fields, BTreeSet::new());
    assert_eq!(snapshot.field_errors, Default::default());
    assert_eq!(snapshot.lost_gpus, vec![]);
    assert_eq!(snapshot.gpus.len(), 2);

    let h100 = GpuInfo {
        index: 0,
        uuid: "GPU-5a4c2e1b-8d3f-4e7a-b6c0-9f1d2a8e5c73".into(),
        product_name: Some("NVIDIA H100 80GB HBM3".into()),
        pci_bus_id: Some("0000:3b:00.0".into()),
        serial: Some("1654922018862".into()),
        memory: Some(GpuMemory { total_mib: 81559, used_mib: Some(74213) }),
        temperature_celsius: Some(91),
        power_draw_watts: Some(652),
        power_limit_watts: Some(700),
        utilization: Some(Utilization { gpu_percent: 98, memory_percent: 61 }),
        clocks: Some(Clocks { sm_mhz: Some(1755), memory_mhz: Some(2619) }),
        throttle_reasons: Some(vec!["SwPowerCap".into(), "SwThermalSlowdown".into(), "HwThermalSlowdown".into()]),
        ecc: Some(EccCounters {
            enabled: true,
            volatile_corrected: Some(3),
            volatile_uncorrected: Some(1),
            aggregate_corrected: Some(17),
            aggregate_uncorrected: Some(2),
        }),
        retired_pages: Some(RetiredPages { single_bit_ecc: 2, double_bit_ecc: 1, pending: true }),
        remapped_rows: Some(RemappedRows { correctable: 4, uncorrectable: 1, pending: true, failure: false }),
        mig: Some(MigInfo { enabled: false, pending_enabled: Some(false), device_count: Some(0), device_uuids: None }),
        nvlinks: Some(NvLinks { count: 4, inactive: vec![2] }),
        recovery_action: Some(RecoveryActionStatus {
            code: 2,
            action: "NodeReboot".into(),
            source: XidSource::Nvml,
            time: None,
        }),
        pods: None,
        pods_omitted: None,
    };
    assert_eq!(gpu(&snapshot, 0)?, &h100);

    let a100 = gpu(&snapshot, 1)?;
    assert_eq!(a100.product_name.as_deref(), Some("NVIDIA A100-SXM4-80GB"));
    assert_eq!(a100.pci_bus_id.as_deref(), Some("0000:47:00.0"));
    assert_eq!(a100.power_limit_watts, Some(400));
    assert_eq!(a100.throttle_reasons, Some(vec![]));
    // ECC off: the mode is reported and the counters are not asked for.
    assert_eq!(a100.ecc, Some(EccCounters { enabled: false, ..Default::default() }));
    assert_eq!(
        a100.mig,
        Some(MigInfo { enabled: true, pending_enabled: Some(true), device_count: Some(3), device_uuids: None })
    );
    assert_eq!(a100.nvlinks.as_ref(), Some(&NvLinks { count: 12, inactive: vec![] }));
    Ok(())
}

#[test]
fn not_supported_remapped_rows_are_listed_not_fatal() -> TestResult {
    let config = format!("{TWO_GPUS}\ngpu.0.remapped_rows=not_supported\n");
    let (_dir, _fake, mut backend) = open(&[], &config)?;
    let snapshot = backend.snapshot()?;
    assert_eq!(snapshot.unsupported_fields, set(&["gpus.remappedRows"]));
    assert_eq!(gpu(&snapshot, 0)?.remapped_rows, None);
    // Everything else on that GPU is still there.
    assert_eq!(gpu(&snapshot, 0)?.temperature_celsius, Some(91));
    assert_eq!(gpu(&snapshot, 0)?.recovery_action.as_ref().map(|r| r.code), Some(2));
    assert_eq!(snapshot.gpus.len(), 2);
    Ok(())
}

#[test]
fn not_supported_fields_are_omitted_and_listed_not_fatal() -> TestResult {
    let config = format!(
        "{TWO_GPUS}
cuda_driver_version=not_supported
gpu.0.serial=not_supported
gpu.0.recovery_action=not_supported
gpu.0.retired_pages_sbe=not_supported
gpu.0.ecc_aggregate_uncorrected=not_supported
gpu.0.nvlinks=not_supported
gpu.0.remapped_rows_failure=not_supported
gpu.1.temperature=not_supported
gpu.1.throttle_reasons=function_not_found
gpu.1.mig_mode=invalid_arg
gpu.1.clock_mem=not_supported
"
    );
    let (_dir, _fake, mut backend) = open(&[], &config)?;
    let snapshot = backend.snapshot()?;
    assert_eq!(
        snapshot.unsupported_fields,
        set(&[
            "cudaDriverVersion",
            "gpus.clocks.memoryMhz",
            "gpus.ecc.aggregateUncorrected",
            "gpus.mig",
            "gpus.nvlinks",
            "gpus.recoveryAction",
            "gpus.remappedRows",
            "gpus.retiredPages",
            "gpus.serial",
            "gpus.temperatureCelsius",
            "gpus.throttleReasons",
        ])
    );
    assert_eq!(snapshot.cuda_driver_version, None);
    assert_eq!(snapshot.driver_version.as_deref(), Some("570.86.15"));
    let h100 = gpu(&snapshot, 0)?;
    // Recovery action NOT_SUPPORTED means "unknown", so it is absent, not "None".
    assert_eq!((h100.serial.as_ref(), h100.recovery_action.as_ref()), (None, None));
    assert_eq!((h100.retired_pages.as_ref(), h100.nvlinks.as_ref(), h100.remapped_rows.as_ref()), (None, None, None));
    let ecc = h100.ecc.clone().unwrap_or_default();
    assert_eq!((ecc.enabled, ecc.volatile_corrected, ecc.aggregate_uncorrected), (true, Some(3), None));
    let a100 = gpu(&snapshot, 1)?;
    assert_eq!((a100.temperature_celsius, a100.throttle_reasons.as_ref(), a100.mig.as_ref()), (None, None, None));
    assert_eq!(a100.clocks, Some(Clocks { sm_mhz: Some(1980), memory_mhz: None }));
    assert_eq!(a100.memory.as_ref().map(|m| m.total_mib), Some(81920));
    assert_eq!(snapshot.field_errors, Default::default());
    Ok(())
}

#[test]
fn library_without_a_symbol_still_snapshots_with_that_field_unsupported() -> TestResult {
    let (_dir, _fake, mut backend) =
        open(&["nvmlDeviceGetFieldValues", "nvmlDeviceGetNvLinkState", "nvmlSystemGetCudaDriverVersion_v2"], TWO_GPUS)?;
    let snapshot = backend.snapshot()?;
    assert_eq!(
        snapshot.unsupported_fields,
        set(&["cudaDriverVersion", "gpus.nvlinks", "gpus.recoveryAction", "gpus.remappedRows"])
    );
    assert_eq!(snapshot.gpus.len(), 2);
    let h100 = gpu(&snapshot, 0)?;
    assert_eq!((h100.remapped_rows.as_ref(), h100.recovery_action.as_ref()), (None, None));
    assert_eq!(h100.retired_pages, Some(RetiredPages { single_bit_ecc: 2, double_bit_ecc: 1, pending: true }));
    assert_eq!(h100.temperature_celsius, Some(91));
    Ok(())
}

#[test]
fn other_field_errors_are_omitted_and_recorded_with_the_gpu() -> TestResult {
    let config = format!("{TWO_GPUS}\ngpu.1.serial=no_permission\n");
    let (_dir, _fake, mut backend) = open(&[], &config)?;
    let snapshot = backend.snapshot()?;
    assert_eq!(gpu(&snapshot, 1)?.serial, None);
    assert_eq!(snapshot.field_errors.keys().collect::<Vec<_>>(), vec!["gpus[1].serial"]);
    assert!(snapshot.unsupported_fields.is_empty());
    Ok(())
}

#[test]
fn a_lost_gpu_is_skipped_and_listed_with_what_was_read() -> TestResult {
    let config = "device_count=3\ngpu.1.lost=1\ngpu.2.uuid=GPU-0c93b5d6-8e4a-4f1c-9b7d-2a6e0c3f8b19\n\
                  gpu.2.pci_bus_id=00000000:BA:00.0\ngpu.2.temperature=gpu_lost\n";
    let (_dir, _fake, mut backend) = open(&[], config)?;
    let snapshot = backend.snapshot()?;
    assert_eq!(snapshot.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), vec![0]);
    assert_eq!(
        snapshot.lost_gpus,
        vec![
            LostGpu { index: 1, uuid: None, pci_bus_id: None },
            LostGpu {
                index: 2,
                uuid: Some("GPU-0c93b5d6-8e4a-4f1c-9b7d-2a6e0c3f8b19".into()),
                pci_bus_id: Some("0000:ba:00.0".into()),
            },
        ]
    );
    // A lost GPU contributes no "unsupported" noise.
    assert!(snapshot.unsupported_fields.is_empty(), "{:?}", snapshot.unsupported_fields);
    Ok(())
}

#[test]
fn missing_library_is_a_clear_startup_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lib64/libnvidia-ml.so.1");
    let err = NvmlBackend::open(NvmlConfig { library_path: path.clone() }).err().ok_or("opened a missing library")?;
    assert!(matches!(err, BackendError::NvmlLibraryNotFound { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [path.to_string_lossy().as_ref(), "runtimeClassName: nvidia", "--nvml-library", "--backend simulated"]
    {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    Ok(())
}

#[test]
fn driver_not_loaded_is_a_clear_startup_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = FakeNvml::build(dir.path(), &[], "init=driver_not_loaded\n")?;
    let err = NvmlBackend::open(NvmlConfig { library_path: fake.library().to_path_buf() })
        .err()
        .ok_or("init should have failed")?;
    assert!(matches!(err, BackendError::NvmlDriverNotLoaded { .. }), "{err:?}");
    assert!(err.to_string().contains("nvidia-smi"), "{err}");
    Ok(())
}

#[test]
fn xid_events_arrive_with_the_gpu_uuid_and_pci_bus_id() -> TestResult {
    let (_dir, fake, mut backend) = open(&[], TWO_GPUS)?;
    let mut events = backend.start_xid_events(16)?;
    assert!(recv_within(&mut events.receiver, Duration::from_millis(300)).is_none(), "no XID written yet");

    fake.append_xid(1, 79)?;
    let event = recv_within(&mut events.receiver, Duration::from_secs(5)).ok_or("XID 79 did not arrive")?;
    assert_eq!(event.code, 79);
    assert_eq!(event.gpu_uuid.as_deref(), Some("GPU-7d2b5f90-c84a-4e13-9f6b-a1e3d7c05b82"));
    assert_eq!(event.pci_bus_id.as_deref(), Some("0000:47:00.0"));
    assert_eq!(
        event.to_xid_event(None).map(|x| (x.source, x.pci_bus_id)),
        Some((XidSource::Nvml, "0000:47:00.0".into()))
    );

    fake.append_xid(0, 48)?;
    fake.append_xid(0, 63)?;
    let codes: Vec<u32> = [
        recv_within(&mut events.receiver, Duration::from_secs(5)),
        recv_within(&mut events.receiver, Duration::from_secs(5)),
    ]
    .into_iter()
    .map(|e| e.map(|e| e.code).unwrap_or(0))
    .collect();
    assert_eq!(codes, vec![48, 63]);

    // Snapshots keep working while the event thread waits on the same NVML instance.
    assert_eq!(backend.snapshot()?.gpus.len(), 2);

    let started = Instant::now();
    events.thread.stop()?;
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    assert!(recv_within(&mut events.receiver, Duration::from_millis(100)).is_none());
    assert!(events.receiver.is_closed());
    Ok(())
}

#[test]
fn gpus_without_xid_event_support_are_skipped() -> TestResult {
    let config = format!("{TWO_GPUS}\ngpu.0.supported_events=0\n");
    let (_dir, fake, mut backend) = open(&[], &config)?;
    let mut events = backend.start_xid_events(16)?;
    fake.append_xid(0, 13)?;
    fake.append_xid(1, 31)?;
    let event = recv_within(&mut events.receiver, Duration::from_secs(5)).ok_or("XID 31 did not arrive")?;
    assert_eq!((event.code, event.pci_bus_id.as_deref()), (31, Some("0000:47:00.0")));
    events.thread.stop()?;
    Ok(())
}

#[test]
fn no_gpu_with_xid_events_is_an_error_naming_the_kernel_log_fallback() -> TestResult {
    let config = format!("{TWO_GPUS}\ngpu.0.supported_events=0\ngpu.1.register_events=not_supported\n");
    let (_dir, _fake, mut backend) = open(&[], &config)?;
    let err = backend.start_xid_events(16).err().ok_or("events started with no GPU registered")?;
    assert!(matches!(err, BackendError::EventsUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("/dev/kmsg"), "{err}");
    Ok(())
}

#[test]
fn library_without_event_symbols_fails_events_but_not_snapshots() -> TestResult {
    let (_dir, _fake, mut backend) = open(&["nvmlEventSetWait_v2"], TWO_GPUS)?;
    let err = backend.start_xid_events(16).err().ok_or("events started without nvmlEventSetWait_v2")?;
    assert!(err.to_string().contains("nvmlEventSetWait_v2"), "{err}");
    assert_eq!(backend.snapshot()?.gpus.len(), 2);
    Ok(())
}
