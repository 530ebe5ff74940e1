//! A replay oracle for labelmap proofreading under concurrency and crashes.
//!
//! Test clients send [`Edit`]s and keep what they learnt of each answer ([`Outcome`]:
//! acknowledged with its MutationID, refused, or unknown when the connection died). Afterwards
//! [`replay`] applies the instance's mutation log (`GET mutations`, or `mutations-range` over
//! several versions), record by record in the order the log returns, to a reference
//! [`Oracle`] started from the state before the edits: every record must come from an edit
//! that was acknowledged (matched by MutationID) or whose answer is unknown (matched by its
//! parameters), must agree with that edit and its answer, and must be applicable at its place
//! in the order (a merge of a body that does not exist at that point is a violation); every
//! acknowledged edit must appear. [`compare`] then checks the server against the replayed
//! state: the scale-0 supervoxel volume, the body of every supervoxel, each body's supervoxel
//! set and its size. When both pass, the server's state is that of a serial execution of the
//! acknowledged edits (plus some of the unknown ones) in log order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;

use serde_json::{Value, json};

use super::client::Seg;
use super::mutations::Http;
use super::proofread::{Model, Rng, volume_diff};
use super::rle::{VoxelSet, encode_rles};
use super::volume::{Coord, Volume};

/// One proofreading edit as a client sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// `POST merge [target, merged…]`.
    Merge { target: u64, merged: Vec<u64> },
    /// `POST cleave/<body> [svs…]`.
    Cleave { body: u64, svs: Vec<u64> },
    /// `POST split/<body>` with the RLE of `voxels`.
    Split { body: u64, voxels: VoxelSet },
    /// `POST split-supervoxel/<sv>` with the RLE of `voxels`.
    SplitSupervoxel { sv: u64, voxels: VoxelSet },
}

impl Edit {
    /// The `Action` of the record this edit leaves in the log.
    pub fn action(&self) -> &'static str {
        match self {
            Edit::Merge { .. } => "merge-complete",
            Edit::Cleave { .. } => "cleave-complete",
            Edit::Split { .. } => "split-complete",
            Edit::SplitSupervoxel { .. } => "split-supervoxel-complete",
        }
    }

    /// Index of the kind (merge, cleave, split, split-supervoxel), for tallies.
    pub fn kind(&self) -> usize {
        match self {
            Edit::Merge { .. } => 0,
            Edit::Cleave { .. } => 1,
            Edit::Split { .. } => 2,
            Edit::SplitSupervoxel { .. } => 3,
        }
    }

    /// The request: path relative to the instance, and body.
    pub fn request(&self) -> (String, Vec<u8>) {
        match self {
            Edit::Merge { target, merged } => {
                let mut l = vec![*target];
                l.extend(merged);
                ("merge".into(), json!(l).to_string().into_bytes())
            }
            Edit::Cleave { body, svs } => (
                format!("cleave/{body}"),
                json!(svs).to_string().into_bytes(),
            ),
            Edit::Split { body, voxels } => (format!("split/{body}"), encode_rles(voxels)),
            Edit::SplitSupervoxel { sv, voxels } => {
                (format!("split-supervoxel/{sv}"), encode_rles(voxels))
            }
        }
    }

    /// Whether a log record carries this edit's parameters.
    pub fn matches(&self, rec: &Value) -> bool {
        let n = |k: &str| rec.get(k).and_then(Value::as_u64);
        let list =
            |k: &str| -> Option<Vec<u64>> { serde_json::from_value(rec.get(k)?.clone()).ok() };
        if rec.get("Action").and_then(Value::as_str) != Some(self.action()) {
            return false;
        }
        match self {
            Edit::Merge { target, merged } => {
                let mut m = merged.clone();
                m.sort_unstable();
                m.dedup();
                n("Target") == Some(*target) && list("Labels") == Some(m)
            }
            Edit::Cleave { body, svs } => {
                let mut s = svs.clone();
                s.sort_unstable();
                s.dedup();
                n("OrigLabel") == Some(*body) && list("CleavedSupervoxels") == Some(s)
            }
            Edit::Split { body, .. } => n("Target") == Some(*body),
            Edit::SplitSupervoxel { sv, .. } => n("Supervoxel") == Some(*sv),
        }
    }
}

/// What a client knows of an edit's fate.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// 200 with this MutationID and reply.
    Acked(u64, Value),
    /// A 4xx answer.
    Refused(u16),
    /// No answer (connection dropped, e.g. by a kill): either outcome is allowed.
    Unknown,
}

/// An edit that was sent: where, by whom, and its outcome.
#[derive(Clone, Debug)]
pub struct SentEdit {
    pub uuid: String,
    pub client: usize,
    pub edit: Edit,
    pub outcome: Outcome,
}

/// Sends `edit` to `/api/node/<uuid>/<inst>/…`. Returns the outcome and, for an answer that is
/// neither 200 with a MutationID nor 4xx, a description of it (the outcome is then Unknown).
pub fn send_edit(http: &Http, uuid: &str, inst: &str, edit: &Edit) -> (Outcome, Option<String>) {
    let (path, body) = edit.request();
    let path = format!("/api/node/{uuid}/{inst}/{path}");
    match http.call("POST", &path, Some(body)) {
        Err(_) => (Outcome::Unknown, None),
        Ok((200, bytes)) => {
            let v: Option<Value> = serde_json::from_slice(&bytes).ok();
            match v
                .as_ref()
                .and_then(|v| v.get("MutationID"))
                .and_then(Value::as_u64)
            {
                Some(id) => (Outcome::Acked(id, v.unwrap_or(Value::Null)), None),
                None => (
                    Outcome::Unknown,
                    Some(format!(
                        "POST {path}: 200 without a MutationID: {:?}",
                        String::from_utf8_lossy(&bytes)
                    )),
                ),
            }
        }
        Ok((st, _)) if (400..500).contains(&st) => (Outcome::Refused(st), None),
        Ok((st, bytes)) => (
            Outcome::Unknown,
            Some(format!(
                "POST {path}: status {st}: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
            )),
        ),
    }
}

// ------------------------------------------------------------------ choosing edits

/// `GET label/<p>` (of the supervoxel with `sv`) through `http`.
pub fn label_at(http: &Http, base: &str, p: Coord, sv: bool) -> Result<u64, String> {
    let q = if sv { "?supervoxels=true" } else { "" };
    let (st, body) = http.call(
        "GET",
        &format!("{base}/label/{}_{}_{}{q}", p[0], p[1], p[2]),
        None,
    )?;
    if st != 200 {
        return Err(format!("label at {p:?}: status {st}"));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    v["Label"]
        .as_u64()
        .ok_or_else(|| format!("label at {p:?}: {v}"))
}

/// The box of `half`·2 voxels around `p`, clipped to `[0, region)`, at scale 0.
fn box_around(
    http: &Http,
    base: &str,
    p: Coord,
    region: [usize; 3],
    half: i32,
    sv: bool,
) -> Result<Volume, String> {
    let size: [usize; 3] = std::array::from_fn(|a| (2 * half as usize).min(region[a]));
    let lo: Coord = std::array::from_fn(|a| (p[a] - half).clamp(0, (region[a] - size[a]) as i32));
    let q = if sv { "?supervoxels=true" } else { "" };
    let (st, body) = http.call(
        "GET",
        &format!(
            "{base}/raw/0_1_2/{}_{}_{}/{}_{}_{}{q}",
            size[0], size[1], size[2], lo[0], lo[1], lo[2]
        ),
        None,
    )?;
    if st != 200 || body.len() != size.iter().product::<usize>() * 8 {
        return Err(format!(
            "raw box at {lo:?}: status {st}, {} bytes",
            body.len()
        ));
    }
    Ok(Volume::from_le_bytes(lo, size, &body))
}

/// A random point in `[0, region)`.
pub fn random_point(rng: &mut Rng, region: [usize; 3]) -> Coord {
    std::array::from_fn(|a| rng.below(region[a] as u64) as i32)
}

/// An edit of kind `kind` (0 merge, 1 cleave, 2 split, 3 split-supervoxel) on the body under
/// `p`, chosen from what the server shows now at `base` (`/api/node/<uuid>/<inst>`); `other`
/// is a second point (the body merged in). None when there is nothing to do (background, a
/// one-supervoxel body for a cleave…); Err on a transport error.
pub fn choose_edit(
    http: &Http,
    base: &str,
    region: [usize; 3],
    kind: usize,
    p: Coord,
    other: Coord,
) -> Result<Option<Edit>, String> {
    let sv = label_at(http, base, p, true)?;
    let body = label_at(http, base, p, false)?;
    if sv == 0 || body == 0 {
        return Ok(None);
    }
    Ok(match kind {
        0 => {
            let o = label_at(http, base, other, false)?;
            (o != 0 && o != body).then(|| Edit::Merge {
                target: body,
                merged: vec![o],
            })
        }
        1 => {
            let (st, bytes) = http.call("GET", &format!("{base}/supervoxels/{body}"), None)?;
            if st != 200 {
                return Ok(None);
            }
            let svs: Vec<u64> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            (svs.len() >= 2).then(|| Edit::Cleave {
                body,
                svs: vec![sv],
            })
        }
        2 => {
            let b = box_around(http, base, p, region, 16, false)?;
            let part: VoxelSet = b
                .voxels()
                .filter(|&(q, l)| l == body && q[0] < p[0])
                .map(|(q, _)| q)
                .collect();
            (!part.is_empty()).then_some(Edit::Split { body, voxels: part })
        }
        _ => {
            let b = box_around(http, base, p, region, 16, true)?;
            let part: VoxelSet = b
                .voxels()
                .filter(|&(q, l)| l == sv && q[2] < p[2])
                .map(|(q, _)| q)
                .collect();
            (!part.is_empty()).then_some(Edit::SplitSupervoxel { sv, voxels: part })
        }
    })
}

// ------------------------------------------------------------------ the oracle

/// The reference state: [`Model`] (supervoxel volume + mapping, the spec's semantics) with the
/// supervoxel sizes kept up to date, so that merges and cleaves cost no volume scan.
#[derive(Clone, Debug)]
pub struct Oracle {
    pub model: Model,
    sizes: BTreeMap<u64, u64>,
}

impl Oracle {
    pub fn new(model: Model) -> Oracle {
        let sizes = model.sv_sizes();
        Oracle { model, sizes }
    }

    pub fn body_of(&self, sv: u64) -> u64 {
        self.model.body_of(sv)
    }

    fn set(&mut self, sv: u64, body: u64) {
        if sv == body {
            self.model.map.remove(&sv);
        } else {
            self.model.map.insert(sv, body);
        }
    }

    /// Writes `v` over the supervoxel volume (a block write: new supervoxels map to
    /// themselves unless the mapping says otherwise).
    pub fn paste(&mut self, v: &Volume) {
        self.model.sv.paste(v);
        self.sizes = self.model.sv_sizes();
    }

    /// Supervoxel → voxel count (supervoxels with voxels).
    pub fn sv_sizes(&self) -> &BTreeMap<u64, u64> {
        &self.sizes
    }

    /// Body → its supervoxels (with voxels).
    pub fn bodies(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let mut m: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for &sv in self.sizes.keys() {
            m.entry(self.body_of(sv)).or_default().insert(sv);
        }
        m
    }

    /// Body → voxel count.
    pub fn body_sizes(&self) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        for (&sv, &n) in &self.sizes {
            *m.entry(self.body_of(sv)).or_insert(0) += n;
        }
        m
    }

    /// Every supervoxel id known: with voxels, or in the mapping (retired ones map to 0).
    pub fn known_svs(&self) -> BTreeSet<u64> {
        let mut s: BTreeSet<u64> = self.sizes.keys().copied().collect();
        s.extend(self.model.map.keys().copied());
        s
    }

    fn merge(&mut self, target: u64, merged: &[u64]) -> Result<(), String> {
        let sizes = self.body_sizes();
        if !sizes.contains_key(&target) {
            return Err(format!("merge target {target} has no voxels"));
        }
        for m in merged {
            if !sizes.contains_key(m) {
                return Err(format!("merged body {m} has no voxels"));
            }
        }
        let merged: HashSet<u64> = merged.iter().copied().collect();
        // As in DVID, a merge moves the supervoxels the merged bodies' label indices hold,
        // those with voxels: a supervoxel id without any (the empty side of a split) keeps the
        // body its mapping entry had.
        let with_voxels: Vec<u64> = self.sizes.keys().copied().collect();
        for sv in with_voxels {
            if merged.contains(&self.body_of(sv)) {
                self.set(sv, target);
            }
        }
        Ok(())
    }

    fn cleave(&mut self, body: u64, svs: &[u64], cleaved: u64) -> Result<(), String> {
        let have = self.bodies().remove(&body).unwrap_or_default();
        for sv in svs {
            if !have.contains(sv) {
                return Err(format!("supervoxel {sv} is not in body {body} ({have:?})"));
            }
        }
        let wanted: BTreeSet<u64> = svs.iter().copied().collect();
        if wanted.len() >= have.len() {
            return Err(format!("the cleave would empty body {body}"));
        }
        if self.body_sizes().contains_key(&cleaved) || self.model.map.contains_key(&cleaved) {
            return Err(format!("cleaved label {cleaved} is in use"));
        }
        for sv in wanted {
            self.set(sv, cleaved);
        }
        Ok(())
    }

    /// Runs a [`Model`] operation that panics on a violated precondition; the panic message
    /// becomes the error.
    fn model_op<T>(&mut self, f: impl FnOnce(&mut Model) -> T) -> Result<T, String> {
        let mut copy = self.model.clone();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut copy)));
        match r {
            Ok(t) => {
                self.model = copy;
                self.sizes = self.model.sv_sizes();
                Ok(t)
            }
            Err(e) => Err(e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "model panic".into())),
        }
    }

    /// Applies `edit` as the log record `rec` says it went; Err names what does not fit.
    pub fn apply(&mut self, edit: &Edit, rec: &Value) -> Result<(), String> {
        let n = |k: &str| {
            rec.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("no {k} in {rec}"))
        };
        match edit {
            Edit::Merge { target, merged } => self.merge(*target, merged),
            Edit::Cleave { body, svs } => self.cleave(*body, svs, n("CleavedLabel")?),
            Edit::Split { body, voxels } => {
                let new = n("NewLabel")?;
                let body = *body;
                let ids = self.model_op(|m| m.split(body, voxels, new))?;
                let want: BTreeMap<String, Value> = ids
                    .svs
                    .iter()
                    .map(|(old, s, r)| (old.to_string(), json!({"Split": s, "Remain": r})))
                    .collect();
                let got: BTreeMap<String, Value> = rec
                    .get("SVSplits")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                if got != want {
                    return Err(format!(
                        "the split's supervoxel ids {got:?} are not what a serial split allocating from {new} gives: {want:?}"
                    ));
                }
                Ok(())
            }
            Edit::SplitSupervoxel { sv, voxels } => {
                let (s, r) = (n("SplitSupervoxel")?, n("RemainSupervoxel")?);
                let body = self.body_of(*sv);
                if rec.get("Body").and_then(Value::as_u64) != Some(body) {
                    return Err(format!(
                        "the record says supervoxel {sv} was in body {:?}; serially it is in {body}",
                        rec.get("Body")
                    ));
                }
                let sv = *sv;
                self.model_op(|m| m.split_supervoxel(sv, voxels, s, r))
            }
        }
    }
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Records applied.
    pub applied: usize,
    /// Indices (into the sent edits) of unknown-outcome edits the log shows as done.
    pub unknown_done: Vec<usize>,
    pub violations: Vec<String>,
}

/// Checks the answer an acknowledged edit got against its log record.
fn reply_agrees(reply: &Value, rec: &Value) -> bool {
    let pairs: &[(&str, &str)] = &[
        ("CleavedLabel", "CleavedLabel"),
        ("label", "NewLabel"),
        ("SplitSupervoxel", "SplitSupervoxel"),
        ("RemainSupervoxel", "RemainSupervoxel"),
    ];
    pairs.iter().all(|(a, b)| match reply.get(*a) {
        None => true,
        Some(v) => rec.get(*b) == Some(v),
    })
}

/// Replays `records` (labelmap log records, in log order) on `oracle`, matching each to a sent
/// edit (see the module documentation). Edits not in `sent` (e.g. a setup's) must not appear.
pub fn replay(oracle: &mut Oracle, records: &[Value], sent: &[SentEdit]) -> Replayed {
    let mut out = Replayed::default();
    let by_id: HashMap<u64, usize> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.outcome {
            Outcome::Acked(id, _) => Some((id, i)),
            _ => None,
        })
        .collect();
    let mut used: HashSet<usize> = HashSet::new();
    let mut seen_ids: HashSet<u64> = HashSet::new();
    let mut last_seq = 0;
    for rec in records {
        // The log is in commit order: its commit sequence numbers increase.
        match rec.get("CommitSeq").and_then(Value::as_u64) {
            Some(seq) if seq > last_seq => last_seq = seq,
            other => out.violations.push(format!(
                "log record {rec} has CommitSeq {other:?} after {last_seq}: not in commit order"
            )),
        }
        let id = rec.get("MutationID").and_then(Value::as_u64);
        let uuid = rec.get("UUID").and_then(Value::as_str).unwrap_or("");
        let Some(id) = id else {
            out.violations
                .push(format!("log record without a MutationID: {rec}"));
            continue;
        };
        if !seen_ids.insert(id) {
            out.violations
                .push(format!("MutationID {id} appears twice in the log: {rec}"));
            continue;
        }
        let found = match by_id.get(&id) {
            Some(&i) => Some(i),
            None => sent.iter().enumerate().position(|(i, s)| {
                s.outcome == Outcome::Unknown
                    && !used.contains(&i)
                    && s.uuid == uuid
                    && s.edit.matches(rec)
            }),
        };
        let Some(i) = found else {
            let refused = sent
                .iter()
                .filter(|s| matches!(s.outcome, Outcome::Refused(_)) && s.edit.matches(rec))
                .count();
            out.violations.push(format!(
                "log record {rec} matches no acknowledged or unanswered edit ({refused} refused edits have its parameters)"
            ));
            continue;
        };
        used.insert(i);
        let s = &sent[i];
        if s.outcome == Outcome::Unknown {
            out.unknown_done.push(i);
        }
        if !s.edit.matches(rec) || s.uuid != uuid {
            out.violations.push(format!(
                "log record {rec} does not carry the parameters of edit {:?} at {} (MutationID {id})",
                brief(&s.edit),
                s.uuid
            ));
            continue;
        }
        if let Outcome::Acked(_, reply) = &s.outcome
            && !reply_agrees(reply, rec)
        {
            out.violations.push(format!(
                "log record {rec} disagrees with the answer {reply}"
            ));
        }
        match oracle.apply(&s.edit, rec) {
            Ok(()) => out.applied += 1,
            Err(e) => out.violations.push(format!(
                "log record {rec} (client {}) is not applicable at its place in the log order: {e}",
                s.client
            )),
        }
    }
    for (i, s) in sent.iter().enumerate() {
        if let Outcome::Acked(id, _) = s.outcome
            && !used.contains(&i)
        {
            out.violations.push(format!(
                "acknowledged edit {:?} (MutationID {id}, client {}) is not in the log",
                brief(&s.edit),
                s.client
            ));
        }
    }
    out
}

/// An edit without its voxel set, for messages.
pub fn brief(e: &Edit) -> String {
    match e {
        Edit::Split { body, voxels } => {
            format!("Split {{ body: {body}, {} voxels }}", voxels.len())
        }
        Edit::SplitSupervoxel { sv, voxels } => {
            format!("SplitSupervoxel {{ sv: {sv}, {} voxels }}", voxels.len())
        }
        other => format!("{other:?}"),
    }
}

/// Compares the server (`seg`, the box `[0, size)`) with the oracle: the scale-0 supervoxel
/// volume, `GET mapping` of every supervoxel the oracle knows (retired ones: 0), and for every
/// body its `supervoxels/<body>` and `sizes`. Returns the violations.
pub fn compare(seg: &Seg, oracle: &Oracle, size: [usize; 3]) -> Vec<String> {
    let mut v = Vec::new();
    let got = seg.raw([0; 3], size, "supervoxels=true");
    if got != oracle.model.sv {
        v.push(format!(
            "scale-0 supervoxels differ from the replayed log: {}",
            volume_diff(&got, &oracle.model.sv)
        ));
    }
    let svs: Vec<u64> = oracle.known_svs().into_iter().collect();
    let mapped = seg.mapping(&svs, "");
    for (sv, g) in svs.iter().zip(&mapped) {
        let want = oracle.body_of(*sv);
        if *g != want {
            v.push(format!(
                "mapping of supervoxel {sv}: server {g}, replay {want}"
            ));
        }
    }
    let bodies = oracle.bodies();
    let labels: Vec<u64> = bodies.keys().copied().collect();
    let sizes = seg.sizes(&labels, "");
    let want_sizes = oracle.body_sizes();
    for (b, g) in labels.iter().zip(&sizes) {
        if *g != want_sizes[b] {
            v.push(format!(
                "size of body {b}: server {g}, replay {}",
                want_sizes[b]
            ));
        }
    }
    for (b, want) in &bodies {
        let got = seg.supervoxels_of(*b);
        if got.as_ref() != Some(want) {
            v.push(format!("supervoxels/{b}: server {got:?}, replay {want:?}"));
        }
    }
    v
}
