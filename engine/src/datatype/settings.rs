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

    /// A setting of three comma-separated numbers, e.g. `BlockSize` "64,64,64".
    pub fn triple<T: std::str::FromStr>(&self, key: &str) -> Result<Option<[T; 3]>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || Error::bad(format!("{key} {v:?} must be three comma-separated numbers"));
        let parts: Vec<T> = v
            .split(',')
            .map(|p| p.trim().parse::<T>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        parts.try_into().map(Some).map_err(|_| bad())
    }

    /// `VoxelSize` (nanometers by default 8 each): three positive numbers.
    pub fn voxel_size(&self) -> Result<[f64; 3]> {
        let r = self.triple::<f64>("VoxelSize")?.unwrap_or([8.0; 3]);
        if r.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return Err(Error::bad(format!(
                "VoxelSize {r:?}: sizes must be positive numbers"
            )));
        }
        Ok(r)
    }

    /// `VoxelUnits`: one unit for all axes or three, comma-separated; nanometers by default.
    pub fn voxel_units(&self) -> Result<[String; 3]> {
        let Some(v) = self.get("VoxelUnits") else {
            return Ok(std::array::from_fn(|_| "nanometers".to_string()));
        };
        let parts: Vec<&str> = v.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [one] => Ok(std::array::from_fn(|_| one.to_string())),
            [a, b, c] => Ok([a.to_string(), b.to_string(), c.to_string()]),
            _ => Err(Error::bad(format!(
                "VoxelUnits {v:?}: give one unit or three, comma-separated"
            ))),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
