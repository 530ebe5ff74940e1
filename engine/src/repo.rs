//! Repos and their version DAG (spec §1.1–§1.3): the persisted records and the pure DAG
//! operations on them. Locking, id allocation and persistence live in `engine.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tessera_storage::{Dag, VersionId};

use crate::instance::InstanceMeta;
use crate::{Error, Result};

/// DVID's first mutation ID.
pub const INITIAL_MUTATION_ID: u64 = 1_000_000_000;
/// Mutation IDs are persisted in strides, so a restart may skip up to this many (as DVID does).
pub const MUTATION_ID_STRIDE: u64 = 100;

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A log line as DVID stores it: `"<RFC3339 time>  <msg>"` (two spaces).
pub fn log_line(msg: &str) -> String {
    format!(
        "{}  {msg}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub uuid: String,
    pub version: VersionId,
    /// "" is the master branch.
    pub branch: String,
    pub note: String,
    pub log: Vec<String>,
    pub locked: bool,
    /// parents[0] is the default ancestor path and the highest merge priority.
    pub parents: Vec<VersionId>,
    pub children: Vec<VersionId>,
    pub created: String,
    pub updated: String,
    /// An open node received by a transfer and not written here since: a later transfer may
    /// update it. The first local write makes it this server's own, and a transfer that
    /// would overwrite it is then refused as a diverged history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

impl Node {
    pub fn new(
        uuid: String,
        version: VersionId,
        branch: String,
        parents: Vec<VersionId>,
        note: String,
    ) -> Self {
        let t = now();
        Node {
            uuid,
            version,
            branch,
            note,
            log: Vec::new(),
            locked: false,
            parents,
            children: Vec::new(),
            created: t.clone(),
            updated: t,
            mirror: false,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "Branch": self.branch, "Note": self.note, "Log": self.log, "UUID": self.uuid,
            "VersionID": self.version, "Locked": self.locked, "Parents": self.parents,
            "Children": self.children, "Created": self.created, "Updated": self.updated,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repo {
    pub root: VersionId,
    pub alias: String,
    pub description: String,
    pub log: Vec<String>,
    pub properties: serde_json::Map<String, Value>,
    pub passcode: String,
    pub created: String,
    pub updated: String,
    pub nodes: BTreeMap<VersionId, Node>,
    /// The leaf of each branch: the most recently created node on it by newversion, branch or
    /// tag. Merge nodes do not move a leaf (spec §10).
    pub branch_leaves: BTreeMap<String, VersionId>,
    pub instances: BTreeMap<String, InstanceMeta>,
    pub mutation_id: u64,
    pub saved_mutation_id: u64,
    /// Set while a transfer writes into the repo (`engine::transfer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving: Option<Receiving>,
    /// On a partial replica, the origin's instances a transfer left out (`data=`): requests
    /// naming them answer 404 rather than "no such instance".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_held: Vec<String>,
    #[serde(skip)]
    pub dag: Arc<Dag>,
}

/// A transfer in progress into a repo: the nodes and instances it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receiving {
    /// The sent nodes' UUIDs.
    pub nodes: Vec<String>,
    pub instances: Vec<String>,
    /// Instances the transfer created here (they subscribe to their syncs when it finishes).
    pub new_instances: Vec<String>,
    pub started: String,
    /// What arrived so far, over every run of the transfer: records written and their bytes,
    /// and records copied from values already here instead of sent.
    #[serde(default)]
    pub records: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub reused: u64,
}

/// Names an instance may not take (spec §1.1).
const RESERVED_NAMES: [&str; 5] = ["log", "branch", "note", "commit", "newversion"];

impl Repo {
    pub fn new(
        root: Node,
        alias: String,
        description: String,
        passcode: String,
        first_mutation_id: u64,
    ) -> Self {
        let t = now();
        let mut repo = Repo {
            root: root.version,
            alias,
            description,
            log: Vec::new(),
            properties: Default::default(),
            passcode,
            created: t.clone(),
            updated: t,
            nodes: BTreeMap::new(),
            branch_leaves: BTreeMap::from([(String::new(), root.version)]),
            instances: BTreeMap::new(),
            mutation_id: first_mutation_id,
            saved_mutation_id: first_mutation_id,
            receiving: None,
            not_held: Vec::new(),
            dag: Arc::default(),
        };
        repo.nodes.insert(root.version, root);
        repo.rebuild_dag();
        repo
    }

    /// Recomputes the storage layer's view of the DAG after a change (DAGs change rarely, reads
    /// share the `Arc`).
    pub fn rebuild_dag(&mut self) {
        let mut dag = Dag::new();
        for n in self.nodes.values() {
            dag.add(n.version, n.parents.clone());
        }
        self.dag = Arc::new(dag);
    }

    pub fn node(&self, v: VersionId) -> Result<&Node> {
        self.nodes
            .get(&v)
            .ok_or_else(|| Error::Internal(format!("version {v} missing from its repo")))
    }

    fn node_mut(&mut self, v: VersionId) -> Result<&mut Node> {
        self.nodes
            .get_mut(&v)
            .ok_or_else(|| Error::Internal(format!("version {v} missing from its repo")))
    }

    pub fn root_uuid(&self) -> &str {
        &self.nodes[&self.root].uuid
    }

    pub fn touch(&mut self) {
        self.updated = now();
    }

    /// Commits (locks) a node; its note is replaced when one is given and log lines appended.
    pub fn commit(&mut self, v: VersionId, note: Option<String>, log: Vec<String>) -> Result<()> {
        let node = self.node_mut(v)?;
        if node.locked {
            return Err(Error::bad(format!(
                "node {} has already been committed",
                node.uuid
            )));
        }
        node.locked = true;
        if let Some(n) = note {
            node.note = n;
        }
        node.log.extend(log.iter().map(|l| log_line(l)));
        node.updated = now();
        self.touch();
        Ok(())
    }

    fn require_locked(&self, parent: VersionId) -> Result<()> {
        let p = self.node(parent)?;
        if !p.locked {
            return Err(Error::bad(format!(
                "can't create a child of uncommitted node {}: commit it first",
                p.uuid
            )));
        }
        Ok(())
    }

    fn add_child(&mut self, child: Node) -> Result<()> {
        for p in child.parents.clone() {
            self.node_mut(p)?.children.push(child.version);
        }
        self.nodes.insert(child.version, child);
        self.rebuild_dag();
        self.touch();
        Ok(())
    }

    /// Adds a node a transfer brought (its parents already here), moving its branch's leaf to
    /// it when it extends that branch.
    pub fn receive_node(&mut self, node: Node) -> Result<()> {
        let extends = match self.branch_leaves.get(&node.branch) {
            None => true,
            Some(leaf) => {
                node.parents.contains(leaf)
                    || self
                        .dag
                        .is_ancestor(*leaf, node.parents.first().copied().unwrap_or(0))
            }
        };
        if extends && node.parents.len() <= 1 {
            self.branch_leaves.insert(node.branch.clone(), node.version);
        }
        self.add_child(node)
    }

    /// Checks a new child on `branch` under `parent` is allowed (spec §1.3 newversion/branch).
    pub fn check_new_child(&self, parent: VersionId, branch: &str) -> Result<()> {
        self.require_locked(parent)?;
        let p = self.node(parent)?;
        if branch == p.branch {
            if p.children.iter().any(|c| self.nodes[c].branch == branch) {
                return Err(Error::bad(format!(
                    "branch unique error: node {} already has a child on branch {:?}; use a new branch name",
                    p.uuid, branch
                )));
            }
        } else if branch.is_empty() || branch == "master" {
            return Err(Error::bad("branch name must not be empty or \"master\""));
        } else if self.nodes.values().any(|n| n.branch == branch) {
            return Err(Error::bad(format!(
                "branch {branch:?} already exists in this repo"
            )));
        }
        Ok(())
    }

    /// A child of `parent` on `branch` (already checked with `check_new_child`).
    pub fn new_child(
        &mut self,
        parent: VersionId,
        version: VersionId,
        uuid: String,
        branch: String,
        note: String,
    ) -> Result<()> {
        self.check_new_child(parent, &branch)?;
        self.branch_leaves.insert(branch.clone(), version);
        self.add_child(Node::new(uuid, version, branch, vec![parent], note))
    }

    /// A committed child whose UUID is the tag itself, on branch "tag-<tag>".
    pub fn tag(
        &mut self,
        parent: VersionId,
        version: VersionId,
        tag: String,
        note: String,
    ) -> Result<()> {
        self.require_locked(parent)?;
        let branch = format!("tag-{tag}");
        let mut node = Node::new(tag, version, branch.clone(), vec![parent], note);
        node.locked = true;
        self.branch_leaves.insert(branch, version);
        self.add_child(node)
    }

    /// A conflict-free merge: one unlocked child of all `parents` (in priority order).
    pub fn merge(
        &mut self,
        parents: &[VersionId],
        version: VersionId,
        uuid: String,
        note: String,
    ) -> Result<()> {
        if parents.len() < 2 {
            return Err(Error::bad("merge needs at least two parents"));
        }
        for (i, p) in parents.iter().enumerate() {
            if parents[..i].contains(p) {
                return Err(Error::bad("merge parents must be distinct"));
            }
            self.require_locked(*p)?;
        }
        self.add_child(Node::new(
            uuid,
            version,
            String::new(),
            parents.to_vec(),
            note,
        ))
    }

    /// Versions from the leaf of `branch` back to the root (spec §3.3 branch-versions): at a
    /// merge node the non-last parents are listed and the walk goes on up the last parent.
    pub fn branch_versions(&self, branch: &str) -> Vec<VersionId> {
        let Some(&leaf) = self.branch_leaves.get(branch) else {
            return Vec::new();
        };
        let mut out = vec![leaf];
        let mut cur = leaf;
        while let Some(node) = self.nodes.get(&cur) {
            let Some((last, rest)) = node.parents.split_last() else {
                break;
            };
            out.extend_from_slice(rest);
            out.push(*last);
            cur = *last;
        }
        out
    }

    pub fn check_instance_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::bad("data instance name must not be empty"));
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(Error::bad(format!(
                "{name:?} is a reserved name and can't name a data instance"
            )));
        }
        if name.contains('/') {
            return Err(Error::bad("data instance names can't contain '/'"));
        }
        if self.instances.contains_key(name) {
            return Err(Error::bad(format!(
                "data instance {name:?} already exists in this repo"
            )));
        }
        Ok(())
    }

    pub fn instance(&self, name: &str) -> Result<&InstanceMeta> {
        self.instances.get(name).ok_or_else(|| {
            if self.not_held.iter().any(|n| n == name) {
                return Error::not_found(format!(
                    "instance {name:?} of repo {} is not held on this server (it was left out \
                     of the pull that made this replica): read it from the origin, or pull it \
                     with --data {name}",
                    self.root_uuid()
                ));
            }
            Error::bad(format!(
                "no data instance named {name:?} in repo {}",
                self.root_uuid()
            ))
        })
    }

    pub fn instance_by_uuid(&self, data_uuid: &str) -> Option<&InstanceMeta> {
        self.instances.values().find(|i| i.data_uuid == data_uuid)
    }
}
