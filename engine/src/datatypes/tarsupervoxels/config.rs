//! Creation settings: `Extension`, the file extension of the blobs (DVID's; "dat" when not
//! given), which names every member of `POST load` and `GET tarfile` archives.

use serde::{Deserialize, Serialize};

use super::archive::MISSING_EXTENSION;
use crate::datatype::Settings;
use crate::mesh::format::Format;
use crate::{Error, Result};

/// Longest extension: keeps `<20-digit id>.<ext>` inside a tar header's 100-byte name.
pub const MAX_EXTENSION: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(rename = "Extension")]
    pub extension: String,
    /// `Generate`: supervoxels without a stored blob are meshed from the synced labelmap
    /// (Extension ngmesh, obj or ply names the format), on read and by `POST generate`.
    #[serde(rename = "Generate", default)]
    pub generate: bool,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Config> {
        let extension = settings.get("Extension").unwrap_or("dat").to_string();
        check_extension(&extension)?;
        let generate = settings.bool("Generate")?.unwrap_or(false);
        if generate && extension.parse::<Format>().is_err() {
            return Err(Error::bad(format!(
                "Generate meshes supervoxels, so Extension must name a mesh format (ngmesh, obj or ply), not {extension:?}"
            )));
        }
        Ok(Config {
            extension,
            generate,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("stored tarsupervoxels configuration: {e}")))
    }
}

/// An extension is 1 to 32 ASCII letters and digits, and not "missing" (the name `GET tarfile`
/// gives supervoxels without data).
pub fn check_extension(ext: &str) -> Result<()> {
    if ext.is_empty()
        || ext.len() > MAX_EXTENSION
        || !ext.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::bad(format!(
            "Extension {ext:?} must be 1 to {MAX_EXTENSION} ASCII letters or digits, e.g. \"drc\""
        )));
    }
    if ext == MISSING_EXTENSION {
        return Err(Error::bad(format!(
            "Extension {ext:?} is reserved: tarfile names supervoxels without data <sv>.missing"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_defaults_and_checks() {
        let cfg = Config::from_settings(&Settings::default()).unwrap();
        assert_eq!(cfg.extension, "dat");
        let mut s = Settings::default();
        s.set("extension", "drc");
        let cfg = Config::from_settings(&s).unwrap();
        assert_eq!(cfg.extension, "drc");
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Extension": "drc", "Generate": false})
        );
        assert_eq!(Config::from_json(&json).unwrap(), cfg);
        // Configurations stored before Generate existed still read.
        let old = serde_json::json!({"Extension": "drc"});
        assert_eq!(Config::from_json(&old).unwrap(), cfg);
        for bad in ["", ".drc", "d.rc", "a/b", "ü", "missing", &"x".repeat(33)] {
            let mut s = Settings::default();
            s.set("Extension", bad);
            let e = Config::from_settings(&s).unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{bad:?}");
            assert!(e.to_string().contains("Extension"), "{e}");
        }
        let mut s = Settings::default();
        s.set("Extension", "x".repeat(32));
        assert!(Config::from_settings(&s).is_ok());
    }

    #[test]
    fn generate_needs_a_mesh_extension() {
        for (ext, ok) in [
            ("ngmesh", true),
            ("OBJ", true),
            ("ply", true),
            ("drc", false),
        ] {
            let mut s = Settings::default();
            s.set("Extension", ext);
            s.set("Generate", "true");
            assert_eq!(Config::from_settings(&s).is_ok(), ok, "{ext}");
        }
        let mut s = Settings::default();
        s.set("Generate", "maybe");
        assert!(Config::from_settings(&s).is_err());
    }
}
