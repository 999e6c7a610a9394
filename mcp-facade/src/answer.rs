//! How a tool's answer reaches the client: the answer struct as `structuredContent` (its schema is the tool's
//! `outputSchema`), and as text a short summary (verdict, action, highlights) followed by the same JSON for
//! clients that read only text.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Serialize;

/// An answer struct: object-shaped, leading with its verdict and action.
pub trait Answer: Serialize + JsonSchema + 'static {
    /// One line: what is the case.
    fn verdict(&self) -> &str;
    /// One line: what to do about it.
    fn action(&self) -> &str;
    /// A few lines of the most important evidence, for the text summary.
    fn highlights(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The text summary of an answer.
pub fn summary<T: Answer>(answer: &T) -> String {
    let mut text = format!("{}\nAction: {}", answer.verdict(), answer.action());
    for line in answer.highlights() {
        text.push_str("\n- ");
        text.push_str(&line);
    }
    text
}

/// A tool's successful result.
#[derive(Debug)]
pub struct ToolAnswer<T>(pub T);

impl<T: Answer> IntoCallToolResult for ToolAnswer<T> {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let value = serde_json::to_value(&self.0)
            .map_err(|e| rmcp::ErrorData::internal_error(format!("cannot serialize the answer: {e}"), None))?;
        let mut result = CallToolResult::structured(value);
        // `structured` put the JSON as the only text block; the summary goes first so a human reads it first.
        result.content.insert(0, ContentBlock::text(summary(&self.0)));
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, JsonSchema)]
    struct Demo {
        verdict: String,
        action: String,
        gpus: u32,
    }

    impl Answer for Demo {
        fn verdict(&self) -> &str {
            &self.verdict
        }
        fn action(&self) -> &str {
            &self.action
        }
        fn highlights(&self) -> Vec<String> {
            vec![format!("{} GPUs", self.gpus)]
        }
    }

    #[test]
    fn result_carries_summary_then_json_and_structured_content() {
        let answer = Demo { verdict: "All 8 GPUs healthy".into(), action: "None needed".into(), gpus: 8 };
        let Ok(CallToolResponse::Complete(r)) = ToolAnswer(answer).into_call_tool_result() else {
            panic!("expected a complete result")
        };
        assert_eq!(r.is_error, Some(false));
        let texts: Vec<String> = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
        assert_eq!(texts[0], "All 8 GPUs healthy\nAction: None needed\n- 8 GPUs");
        let json: serde_json::Value = serde_json::from_str(&texts[1]).expect("json");
        assert_eq!(json["gpus"], 8);
        assert_eq!(r.structured_content.as_ref().map(|v| v["gpus"].clone()), Some(serde_json::json!(8)));
    }
}
