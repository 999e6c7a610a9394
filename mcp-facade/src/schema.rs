//! Tool schemas in JSON Schema's standard vocabulary only.
//!
//! schemars writes Rust's number widths as `format` values (`uint32`, `int64`, `uint`, `double`, …) that JSON Schema
//! does not define. MCP Inspector warns about each one, and clients with strict schema handling (several model
//! providers' function-calling APIs accept only a few formats) may reject the tool. Each integer width becomes the
//! bounds it stands for (`minimum`/`maximum`, keeping any tighter bound the type declared), and every format JSON
//! Schema 2020-12 does not define is dropped.

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};
use std::sync::Arc;

/// The `format` values JSON Schema 2020-12 defines (Validation, section 7.3). Any other is not standard.
pub const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keywords whose values are data, not schemas: never rewritten.
const DATA_KEYWORDS: [&str; 4] = ["enum", "const", "default", "examples"];

/// The bounds an integer `format` from schemars stands for. 64-bit maxima are left out: a JSON number that large
/// loses precision in most clients (JavaScript's among them), and no argument or answer of ours gets near them.
fn integer_bounds(format: &str) -> Option<(Option<i64>, Option<i64>)> {
    Some(match format {
        "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
        "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
        "uint8" => (Some(0), Some(u8::MAX.into())),
        "uint16" => (Some(0), Some(u16::MAX.into())),
        "uint32" => (Some(0), Some(u32::MAX.into())),
        "uint64" | "uint" | "uint128" => (Some(0), None),
        "int64" | "int" | "int128" => (None, None),
        _ => return None,
    })
}

/// Rewrite one schema (and every schema inside it) into the standard vocabulary.
pub fn standardize(schema: &mut JsonObject) {
    if let Some(Value::String(format)) = schema.get("format") {
        let format = format.clone();
        if let Some((min, max)) = integer_bounds(&format) {
            // A bound the type already declared (a `limit` of 1..=200) is tighter than the width's; keep it.
            if let Some(min) = min {
                schema.entry("minimum").or_insert(json!(min));
            }
            if let Some(max) = max {
                schema.entry("maximum").or_insert(json!(max));
            }
        }
        if !STANDARD_FORMATS.contains(&format.as_str()) {
            schema.remove("format");
        }
    }
    for (key, value) in schema.iter_mut() {
        if DATA_KEYWORDS.contains(&key.as_str()) {
            continue;
        }
        standardize_value(value);
    }
}

/// [`standardize`] every schema object inside `value` (a subschema, a map of them, or a list of them).
fn standardize_value(value: &mut Value) {
    match value {
        Value::Object(object) => standardize(object),
        Value::Array(items) => items.iter_mut().for_each(standardize_value),
        _ => {}
    }
}

/// A tool's input and output schemas in the standard vocabulary.
pub fn standardize_tool(tool: &mut Tool) {
    standardize(Arc::make_mut(&mut tool.input_schema));
    if let Some(output) = tool.output_schema.as_mut() {
        standardize(Arc::make_mut(output));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standardized(v: Value) -> Value {
        let Value::Object(mut object) = v else { panic!("not an object") };
        standardize(&mut object);
        Value::Object(object)
    }

    #[test]
    fn integer_widths_become_bounds_and_declared_bounds_win() {
        let schema = standardized(json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "format": "uint32", "minimum": 1, "maximum": 200 },
                "code": { "type": "integer", "format": "uint32", "minimum": 0 },
                "count": { "type": ["integer", "null"], "format": "uint64", "minimum": 0 },
                "delta": { "type": "integer", "format": "int64" },
                "temp": { "type": "integer", "format": "int16" },
                "ratio": { "type": "number", "format": "double" },
                "when": { "type": "string", "format": "date-time" },
                "format": { "type": "string", "enum": ["text", "json"], "default": "text" }
            },
            "$defs": { "Gpu": { "anyOf": [ { "type": "integer", "format": "uint" }, { "type": "string" } ] } }
        }));
        let p = &schema["properties"];
        assert_eq!(p["limit"], json!({ "type": "integer", "minimum": 1, "maximum": 200 }));
        assert_eq!(p["code"], json!({ "type": "integer", "minimum": 0, "maximum": 4294967295u32 }));
        assert_eq!(p["count"], json!({ "type": ["integer", "null"], "minimum": 0 }));
        assert_eq!(p["delta"], json!({ "type": "integer" }));
        assert_eq!(p["temp"], json!({ "type": "integer", "minimum": -32768, "maximum": 32767 }));
        assert_eq!(p["ratio"], json!({ "type": "number" }));
        assert_eq!(p["when"], json!({ "type": "string", "format": "date-time" }), "a standard format stays");
        assert_eq!(p["format"]["default"], "text", "a property named format is a schema, not the keyword");
        assert_eq!(schema["$defs"]["Gpu"]["anyOf"][0], json!({ "type": "integer", "minimum": 0 }));
    }

    #[test]
    fn data_is_left_alone() {
        let schema = standardized(json!({ "const": { "format": "uint32" }, "examples": [{ "format": "int8" }] }));
        assert_eq!(schema["const"]["format"], "uint32");
        assert_eq!(schema["examples"][0]["format"], "int8");
    }
}
