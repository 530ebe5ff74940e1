//! `tessera store …`: offline work on a stopped server's stores.
//!
//! `digest`: what the stores hold, as one hash per store. Two stores with the same digest hold
//! the same keys and values, byte for byte: how the bad-input tests prove a refused request
//! wrote nothing, and how an operator compares a backup or a replica with its origin.
//! `gc`: the object collection of `POST /api/server/gc`, with the server stopped.
//! `migrate`: moves an instance to another store of the configuration.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Prints one JSON object per store: alias, engine, keys, bytes, sha256 of every key and value
/// in key order (each length-prefixed, so no two contents hash alike by concatenation).
/// With `keys`, also one line per key: the store, the key in hex and the SHA-256 of its value,
/// to find what differs between two stores.
pub fn digest(config: Option<&Path>, data: &Path, keys_too: bool) -> anyhow::Result<()> {
    let config = match config {
        Some(p) => Config::load(p)?.0,
        None => Config::default(),
    };
    for (alias, kv) in config.open_stores(data, false)?.kv {
        let (mut keys, mut bytes, mut hash) = (0u64, 0u64, Sha256::new());
        kv.scan(&[], &[], &mut |k, v| {
            keys += 1;
            bytes += (k.len() + v.len()) as u64;
            for part in [k, v] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
            if keys_too {
                println!("{alias} {} {}", hex(k), hex(&Sha256::digest(v)));
            }
            Ok(true)
        })
        .map_err(|e| anyhow::anyhow!("reading store {alias}: {e}"))?;
        let sha = hex(&hash.finalize());
        println!(
            "{}",
            json!({"store": alias, "engine": kv.engine_name(), "keys": keys, "bytes": bytes, "sha256": sha})
        );
    }
    Ok(())
}

/// Prints one JSON object per store that keeps blocks as objects: what the collection found
/// and deleted.
pub fn gc(config: Option<&Path>, data: &Path, grace_secs: f64) -> anyhow::Result<()> {
    let grace = std::time::Duration::try_from_secs_f64(grace_secs)
        .map_err(|_| anyhow::anyhow!("--grace must be a non-negative number of seconds"))?;
    let config = match config {
        Some(p) => Config::load(p)?.0,
        None => Config::default(),
    };
    let stores = config.open_stores(data, false)?;
    if stores.content.is_empty() {
        anyhow::bail!("no store of this configuration keeps objects ([store.X] objects = URL)");
    }
    for (alias, store) in stores.content {
        let r = store
            .gc(grace)
            .map_err(|e| anyhow::anyhow!("collecting store {alias}: {e}"))?;
        println!(
            "{}",
            json!({"store": alias, "objects_url": store.objects_url(), "referenced": r.referenced,
                   "objects": r.objects, "deleted": r.deleted, "deleted_bytes": r.deleted_bytes,
                   "kept_recent": r.kept_recent})
        );
    }
    Ok(())
}

/// Moves `UUID/NAME` to store `to`, with a progress line, and prints what moved as JSON.
pub fn migrate(config_path: &Path, data: &Path, instance: &str, to: &str) -> anyhow::Result<()> {
    let (uuid, name) = instance
        .split_once('/')
        .filter(|(u, n)| !u.is_empty() && !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--instance {instance:?} must be UUID/NAME"))?;
    let config = Config::load(config_path)?.0;
    let stores = config.open_stores(data, false)?;
    let compute: std::sync::Arc<dyn tessera_engine::compute::Compute> =
        std::sync::Arc::new(tessera_engine::compute::cpu::CpuCompute::new());
    let engine = tessera_engine::Engine::open(config.engine_options(&stores, compute, false)?)
        .map_err(|e| anyhow::anyhow!("opening the engine: {e}"))?;
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {binary_bytes} ({binary_bytes_per_sec}) {elapsed}",
        )
        .expect("a valid template"),
    );
    let moved = engine
        .migrate_instance(uuid, name, to, &mut |keys, bytes| {
            bar.set_message(format!("{keys} keys"));
            bar.set_position(bytes);
        })
        .map_err(|e| anyhow::anyhow!("migrating {instance}: {e}"))?;
    bar.finish_and_clear();
    engine
        .flush()
        .map_err(|e| anyhow::anyhow!("flushing stores: {e}"))?;
    println!(
        "{}",
        json!({"instance": instance, "from": moved.from, "to": moved.to, "keys": moved.keys,
               "bytes": moved.bytes, "deleted": moved.deleted})
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
