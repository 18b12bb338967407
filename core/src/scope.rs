//! Model scopes: a token may restrict the models it can use (its `models`
//! claim). The edge verifies the token and passes the list in
//! [`ALLOWED_MODELS_HEADER`] (`a,b`, ids or aliases; client copies are
//! stripped at the edge); the core, which resolves model names, checks the
//! resolved model against it with [`check`]. No header: any model.

use http::{HeaderMap, HeaderName};
use tonic::{Status, metadata::MetadataMap};

/// The header the edge sets from the token's `models` claim.
pub use vibectl_proto::wire::ALLOWED_MODELS_HEADER;

/// [`ALLOWED_MODELS_HEADER`], parsed once.
const ALLOWED_MODELS_NAME: HeaderName = HeaderName::from_static(ALLOWED_MODELS_HEADER);

/// The allowed-models header of a request, if the edge set one.
pub fn allowed_models(metadata: &MetadataMap) -> Option<String> {
    let headers: &HeaderMap = metadata.as_ref();
    headers
        .get(&ALLOWED_MODELS_NAME)
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
}

/// `Ok` when `allowed` (the header's value; `None`: no restriction) names
/// the resolved model `model_id` or one of its `aliases`; else
/// `PERMISSION_DENIED` "token may use models: a, b; asked for c". An empty
/// or unreadable header allows nothing.
pub fn check(allowed: Option<&str>, model_id: &str, aliases: &[String]) -> Result<(), Status> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let names: Vec<&str> = allowed
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let permitted = names
        .iter()
        .any(|n| *n == model_id || aliases.iter().any(|a| a == n));
    if permitted {
        return Ok(());
    }
    let list = if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    };
    Err(Status::permission_denied(format!(
        "token may use models: {list}; asked for {model_id}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(check(None, "gpt-4o", &[]).is_ok());
        assert!(check(Some("echo,gpt-4o"), "gpt-4o", &[]).is_ok());
        assert!(
            check(Some("echo, 4o"), "gpt-4o", &["4o".into()]).is_ok(),
            "by alias"
        );
        let denied = check(Some("echo,4o-mini"), "gpt-4o", &["4o".into()]).expect_err("denied");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "token may use models: echo, 4o-mini; asked for gpt-4o"
        );
        let none = check(Some(""), "echo", &[]).expect_err("empty allows nothing");
        assert!(none.message().contains("(none)"), "{}", none.message());
    }

    #[test]
    fn header_is_read_from_metadata() {
        let mut metadata = MetadataMap::new();
        assert_eq!(allowed_models(&metadata), None);
        metadata.insert(ALLOWED_MODELS_HEADER, "echo,4o".parse().expect("ascii"));
        assert_eq!(allowed_models(&metadata).as_deref(), Some("echo,4o"));
    }
}
