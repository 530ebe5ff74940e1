use std::collections::BTreeMap;

use crate::{Error, Result};

/// Instance creation settings (spec §3.3): keys are case-insensitive (stored lower-cased) and
/// values are JSON strings, except `versioned`, which may also be a bool.
#[derive(Debug, Clone, Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::bad("instance settings must be a JSON object"))?;
        let mut map = BTreeMap::new();
        for (k, v) in obj {
            let key = k.to_ascii_lowercase();
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) if key == "versioned" => b.to_string(),
                _ => {
                    return Err(Error::bad(format!(
                        "setting {k:?} must be a JSON string, got {v}"
                    )));
                }
            };
            map.insert(key, s);
        }
        Ok(Settings(map))
    }

    /// The value of a setting, looked up case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_ascii_lowercase(), value.into());
    }

    /// A boolean setting: "true"/"1" or "false"/"0" (case-insensitive).
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(Error::bad(format!(
                "setting {key:?} must be true or false, got {other:?}"
            ))),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
