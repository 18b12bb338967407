//! The smallest JSON value that a JSON Schema accepts, for the offline
//! `echo` model: asked for structured output (`response_model_schema`), it
//! answers with JSON the client can parse instead of plain text, so a
//! client like `vibectl vibe` runs end to end without a provider.
//!
//! Covers what Pydantic and the providers' structured-output modes emit:
//! `$ref` into `$defs`/`definitions`, `const`, `enum`, `default`, `anyOf`/
//! `oneOf` (first alternative that is not `null`), `allOf` (object members
//! merged), `type` (a list of types too), required properties, `minItems`,
//! `minLength`, `minimum`. Strings carry the echoed text. Recursive schemas
//! stop at [`MAX_DEPTH`] with `null`.

use serde_json::{Map, Value};

/// Deeper than this, the instance is `null` (a recursive schema).
const MAX_DEPTH: usize = 32;

/// An instance of `schema`; string fields hold `text`.
pub fn instance(schema: &Value, text: &str) -> Value {
    Builder { root: schema, text }.build(schema, 0)
}

struct Builder<'a> {
    root: &'a Value,
    text: &'a str,
}

impl Builder<'_> {
    fn build(&self, schema: &Value, depth: usize) -> Value {
        let Some(object) = schema.as_object() else {
            // `true` (anything) or `false` (nothing): null is as good as any.
            return Value::Null;
        };
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(target) = object.get("$ref").and_then(Value::as_str) {
            return match self.resolve(target) {
                Some(target) => self.build(target, depth + 1),
                None => Value::Null,
            };
        }
        for key in ["const", "default"] {
            if let Some(value) = object.get(key) {
                return value.clone();
            }
        }
        if let Some(first) = object
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return first.clone();
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(choices) = object.get(key).and_then(Value::as_array) {
                let pick = choices
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) != Some("null"))
                    .or_else(|| choices.first());
                return pick.map_or(Value::Null, |c| self.build(c, depth + 1));
            }
        }
        if let Some(parts) = object.get("allOf").and_then(Value::as_array) {
            return self.all_of(parts, depth);
        }
        match type_of(object) {
            Some("object") => self.object(object, depth),
            Some("array") => {
                let n = object.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let item = object.get("items").unwrap_or(&Value::Null);
                let n = usize::try_from(n.min(16)).unwrap_or(16);
                Value::Array((0..n).map(|_| self.build(item, depth + 1)).collect())
            }
            Some("string") => Value::String(self.string(object)),
            Some("integer") => object
                .get("minimum")
                .and_then(Value::as_i64)
                .map_or(Value::from(0), Value::from),
            Some("number") => object
                .get("minimum")
                .cloned()
                .unwrap_or_else(|| Value::from(0.0)),
            Some("boolean") => Value::Bool(false),
            Some("null") => Value::Null,
            _ if object.contains_key("properties") => self.object(object, depth),
            _ => Value::Null,
        }
    }

    /// `#/$defs/Name` or `#/definitions/Name` (any JSON pointer into the
    /// root schema).
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    fn object(&self, object: &Map<String, Value>, depth: usize) -> Value {
        let mut out = Map::new();
        let properties = object.get("properties").and_then(Value::as_object);
        let required = object.get("required").and_then(Value::as_array);
        if let (Some(properties), Some(required)) = (properties, required) {
            for name in required.iter().filter_map(Value::as_str) {
                let schema = properties.get(name).unwrap_or(&Value::Null);
                out.insert(name.to_owned(), self.build(schema, depth + 1));
            }
        }
        Value::Object(out)
    }

    fn all_of(&self, parts: &[Value], depth: usize) -> Value {
        let mut merged = Map::new();
        for part in parts {
            match self.build(part, depth + 1) {
                Value::Object(members) => merged.extend(members),
                other if merged.is_empty() => return other,
                _ => {}
            }
        }
        Value::Object(merged)
    }

    fn string(&self, object: &Map<String, Value>) -> String {
        let min = object.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        let min = usize::try_from(min).unwrap_or(usize::MAX);
        let mut text: String = match object.get("maxLength").and_then(Value::as_u64) {
            Some(max) => self
                .text
                .chars()
                .take(usize::try_from(max).unwrap_or(usize::MAX))
                .collect(),
            None => self.text.to_owned(),
        };
        let pad = min.saturating_sub(text.chars().count()).min(4096);
        text.extend(std::iter::repeat_n('.', pad));
        text
    }
}

/// `type`, or the first non-`null` one of a list of types.
fn type_of(object: &Map<String, Value>) -> Option<&str> {
    match object.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or(Some("null")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pydantic_style_schema_gets_a_matching_instance() {
        let schema = json!({
            "$defs": {
                "Thought": {
                    "type": "object",
                    "properties": {
                        "action_type": {"const": "THOUGHT"},
                        "text": {"type": "string"}
                    },
                    "required": ["action_type", "text"]
                },
                "Command": {
                    "type": "object",
                    "properties": {
                        "action_type": {"const": "COMMAND"},
                        "commands": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["action_type"]
                }
            },
            "type": "object",
            "properties": {
                "action": {"oneOf": [{"$ref": "#/$defs/Thought"}, {"$ref": "#/$defs/Command"}]},
                "note": {"anyOf": [{"type": "null"}, {"type": "string"}], "default": null},
                "count": {"type": "integer", "minimum": 1},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2}
            },
            "required": ["action", "count", "tags"]
        });
        assert_eq!(
            instance(&schema, "hello"),
            json!({
                "action": {"action_type": "THOUGHT", "text": "hello"},
                "count": 1,
                "tags": ["a", "a"]
            })
        );
    }

    #[test]
    fn odd_and_recursive_schemas_stay_bounded() {
        let recursive = json!({
            "type": "object",
            "properties": {"next": {"$ref": "#"}},
            "required": ["next"]
        });
        let value = instance(&recursive, "x");
        assert!(value.to_string().len() < 1000, "{value}");
        assert_eq!(instance(&json!(true), "x"), Value::Null);
        assert_eq!(instance(&json!({"$ref": "#/nowhere"}), "x"), Value::Null);
        assert_eq!(
            instance(&json!({"type": ["null", "boolean"]}), "x"),
            json!(false)
        );
        assert_eq!(
            instance(
                &json!({"type": "string", "minLength": 4, "maxLength": 6}),
                "ab"
            ),
            json!("ab..")
        );
        assert_eq!(
            instance(
                &json!({"allOf": [
                    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                    {"type": "object", "properties": {"b": {"type": "null"}}, "required": ["b"]}
                ]}),
                "x"
            ),
            json!({"a": false, "b": null})
        );
    }
}
