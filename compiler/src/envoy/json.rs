//! stub
use super::{Resources, TypeFilter};
pub fn to_config_dump_json(_res: &Resources, _filter: Option<TypeFilter>) -> serde_json::Value {
    serde_json::Value::Null
}
