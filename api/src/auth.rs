//! Who is asking and what they may do (docs/access.md): bearer tokens — signed JWTs naming a
//! user and a role per repo, or the admin token — checked against the access each route
//! declares in the route table (`routes::table`), so a route cannot exist without a rule.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tessera_engine::Engine;
use tessera_engine::datatype::Method;
use tessera_engine::engine::{Caller, RequestKind};

use crate::config::AuthConfig;

/// A role on a repo; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Role> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => bail!("unknown role {other:?}: read, write or admin"),
        }
    }
}

/// A token's claims. `repos` maps a repo's root UUID, or `*` for every repo, to a role;
/// admin on `*` is server administration (the admin token's rights).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// DVID's legacy tokens name the user in `user` too.
    pub user: String,
    #[serde(default)]
    pub repos: BTreeMap<String, Role>,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Claims {
    fn role(&self, root: &str) -> Option<Role> {
        self.repos.get(root).max(self.repos.get("*")).copied()
    }
}

pub enum Identity {
    Anonymous,
    /// The configured admin token: no user of its own (`u=` names one).
    AdminToken,
    User(Claims),
}

/// What a route asks of its caller, declared beside it in the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Anyone: the console, help, heartbeat, load, metrics, the repo list (filtered).
    Public,
    /// Data of the repo holding `{uuid}`: GET and HEAD read, other methods write.
    Repo,
    /// Settings of the repo holding `{uuid}`: GET and HEAD read, other methods need admin.
    RepoAdmin,
    /// Reads of the repo holding `{uuid}` whatever the method (a transfer's sender answers
    /// POSTs because they carry lists, not changes).
    RepoRead,
    /// A transfer into the repo rooted at `{uuid}`: write on it when it is here, and the right
    /// to create repos (write on `*`) when it is not.
    Import,
    /// Instance requests: read, or write when the datatype calls the request a mutation
    /// (roi `ptquery` and neuronjson `query` are POSTs that only read), or server admin for
    /// the few DVID reserves to admins (`Datatype::admin_only`).
    Data,
    /// Creating repos: write on every repo (`*`).
    ServerWrite,
    /// `/api/server/{action}`: info, note, types and routes are public; the rest is admin.
    ServerAction,
    /// Server administration: the admin token, or admin on `*`.
    ServerAdmin,
}

/// Server actions anyone may read.
const PUBLIC_SERVER_ACTIONS: &[&str] = &["info", "note", "types", "compiled-types", "routes"];

/// A refused request: 401 (no valid token) or 403 (a token without the right).
pub enum Denied {
    Unauthenticated(String),
    Forbidden(String),
}

impl From<Denied> for tessera_engine::Error {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(m) => tessera_engine::Error::Unauthorized(m),
            Denied::Forbidden(m) => tessera_engine::Error::Forbidden(m),
        }
    }
}

pub struct Auth {
    enforce: bool,
    admin_token: Option<String>,
    keys: Option<(EncodingKey, DecodingKey)>,
    public_repos: Vec<String>,
    public_versions: Vec<String>,
}

/// The request as access control sees it.
pub struct Target<'a> {
    pub method: Method,
    /// Path segments after the leading '/', percent-decoded.
    pub segments: &'a [String],
}

impl Target<'_> {
    /// The node a repo-scoped route names: `/api/repo/{uuid}`, `/api/node/{uuid}`,
    /// `/precomputed/{uuid}`.
    fn uuid(&self) -> Option<&str> {
        match self.segments {
            [api, level, uuid, ..] if api == "api" && (level == "repo" || level == "node") => {
                Some(uuid)
            }
            [pre, uuid, ..] if pre == "precomputed" => Some(uuid),
            _ => None,
        }
    }

    fn reads(&self) -> bool {
        matches!(self.method, Method::Get | Method::Head)
    }
}

impl Auth {
    pub fn from_config(cfg: &AuthConfig) -> anyhow::Result<Auth> {
        let enforce = match cfg.enforce.as_str() {
            "" | "none" => false,
            "token" => true,
            other => bail!("[auth] enforce = {other:?}: use \"none\" or \"token\""),
        };
        let admin_token = cfg
            .admin_token
            .clone()
            .or_else(|| std::env::var("TESSERA_ADMIN_TOKEN").ok())
            .or_else(|| std::env::var("DVID_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty());
        let secret = match (&cfg.jwt_secret, &cfg.jwt_secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading [auth] jwt_secret_file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => std::env::var("TESSERA_JWT_SECRET")
                .or_else(|_| std::env::var("DVID_JWT_SECRET_KEY"))
                .ok(),
        }
        .filter(|s| !s.is_empty());
        let keys = match secret {
            // HS256 keys shorter than the hash are easy to brute-force offline.
            Some(s) if s.len() < 32 => bail!("the JWT secret must be at least 32 bytes"),
            Some(s) => Some((
                EncodingKey::from_secret(s.as_bytes())?,
                DecodingKey::from_secret(s.as_bytes())?,
            )),
            None => None,
        };
        if enforce && keys.is_none() && admin_token.is_none() {
            bail!(
                "[auth] enforce = \"token\" needs a jwt_secret (or TESSERA_JWT_SECRET) or an admin token: no request could be allowed"
            );
        }
        Ok(Auth {
            enforce,
            admin_token,
            keys,
            public_repos: cfg.public_repos.clone(),
            public_versions: cfg.public_versions.clone(),
        })
    }

    pub fn enforced(&self) -> bool {
        self.enforce
    }

    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// A signed token for `user` with `repos` roles, valid for `ttl` (forever without one).
    pub fn issue(
        &self,
        user: &str,
        repos: BTreeMap<String, Role>,
        ttl: Option<Duration>,
    ) -> anyhow::Result<String> {
        let (key, _) = self
            .keys
            .as_ref()
            .context("no JWT secret: set [auth] jwt_secret or TESSERA_JWT_SECRET")?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            user: user.to_string(),
            repos,
            iat: now,
            exp: ttl.map(|t| now + t.as_secs()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }

    /// Who a token is. A token that is neither the admin token nor a valid signed token is
    /// refused when auth is enforced and ignored when it is not (DVID ignores unknown
    /// `admintoken=` values).
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Identity::Anonymous);
        };
        if self
            .admin_token
            .as_deref()
            .is_some_and(|a| constant_time_eq(a.as_bytes(), token.as_bytes()))
        {
            return Ok(Identity::AdminToken);
        }
        let verified = match &self.keys {
            None => Err("this server issues no signed tokens".to_string()),
            Some((_, key)) => {
                let mut v = Validation::new(Algorithm::HS256);
                // Tokens without `exp` never expire (`tessera token new` without --days).
                v.required_spec_claims.clear();
                v.validate_exp = true;
                jsonwebtoken::decode::<Claims>(token, key, &v)
                    .map(|d| d.claims)
                    .map_err(|e| format!("invalid token: {e}"))
            }
        };
        match verified {
            Ok(claims) => Ok(Identity::User(claims)),
            Err(msg) if self.enforce => Err(Denied::Unauthenticated(msg)),
            Err(_) => Ok(Identity::Anonymous),
        }
    }

    /// The engine's view of the caller: the token's user is the `u=` recorded with mutations;
    /// query `u=` only counts when no signed token names one.
    pub fn caller(&self, who: &Identity, user: Option<String>, app: Option<String>) -> Caller {
        let (user, admin) = match who {
            Identity::User(c) => (Some(c.user.clone()), c.role("*") == Some(Role::Admin)),
            Identity::AdminToken => (user, true),
            Identity::Anonymous => (user, false),
        };
        Caller { user, app, admin }
    }

    /// Whether `who` may make this request to a route declaring `access`.
    pub fn check(
        &self,
        engine: &Engine,
        who: &Identity,
        access: Access,
        target: &Target,
    ) -> Result<(), Denied> {
        if !self.enforce || matches!(who, Identity::AdminToken) {
            return Ok(());
        }
        let need = match access {
            Access::Public => return Ok(()),
            Access::ServerAction => match target.segments.get(2) {
                Some(a) if PUBLIC_SERVER_ACTIONS.contains(&a.as_str()) => return Ok(()),
                _ => return self.server(who, Role::Admin, "server administration"),
            },
            Access::ServerWrite => return self.server(who, Role::Write, "creating a repo"),
            Access::ServerAdmin => return self.server(who, Role::Admin, "server administration"),
            Access::Repo if target.reads() => Role::Read,
            Access::Repo => Role::Write,
            Access::RepoRead => Role::Read,
            Access::Import if target.uuid().is_some_and(|u| engine.node_place(u).is_err()) => {
                return self.server(who, Role::Write, "receiving a new repo");
            }
            Access::Import => Role::Write,
            Access::RepoAdmin if target.reads() => Role::Read,
            Access::RepoAdmin => Role::Admin,
            Access::Data => {
                let segs = target.segments;
                let (Some(uuid), Some(data), Some(keyword)) =
                    (target.uuid(), segs.get(3), segs.get(4))
                else {
                    return self.repo_role(engine, who, target, Role::Write);
                };
                match engine.request_kind(uuid, data, target.method, keyword) {
                    RequestKind::Read => Role::Read,
                    RequestKind::Write => Role::Write,
                    RequestKind::Admin => {
                        return self.server(who, Role::Admin, "this request");
                    }
                }
            }
        };
        self.repo_role(engine, who, target, need)
    }

    fn server(&self, who: &Identity, need: Role, what: &str) -> Result<(), Denied> {
        match who {
            Identity::User(c) if c.role("*") >= Some(need) => Ok(()),
            Identity::User(c) => Err(Denied::Forbidden(format!(
                "{what} needs the {need:?} role on every repo (\"*\"); user {:?} does not have it",
                c.user
            ))),
            _ => Err(unauthenticated(what)),
        }
    }

    fn repo_role(
        &self,
        engine: &Engine,
        who: &Identity,
        target: &Target,
        need: Role,
    ) -> Result<(), Denied> {
        let place = target.uuid().and_then(|u| engine.node_place(u).ok());
        let Some(place) = place else {
            // An unknown node: a caller with a token learns it from the handler's answer;
            // an anonymous one learns nothing.
            return match who {
                Identity::User(_) => Ok(()),
                _ => Err(unauthenticated("this request")),
            };
        };
        if need == Role::Read && self.is_public(engine, &place) {
            return Ok(());
        }
        match who {
            Identity::User(c) if c.role(&place.root) >= Some(need) => Ok(()),
            Identity::User(c) => Err(Denied::Forbidden(format!(
                "{} {} needs the {} role on repo {}; user {:?} has {}",
                target.method.as_str(),
                target.segments.join("/"),
                role_name(need),
                place.root,
                c.user,
                c.role(&place.root).map_or("none", role_name)
            ))),
            _ => Err(unauthenticated(&format!(
                "{} on repo {}",
                target.method.as_str(),
                place.root
            ))),
        }
    }

    /// Readable without a token: a public repo, or a committed public version and its
    /// ancestors.
    fn is_public(&self, engine: &Engine, place: &tessera_engine::engine::NodePlace) -> bool {
        self.public_repos.contains(&place.root)
            || self.public_versions.iter().any(|v| {
                engine
                    .node_place(v)
                    .is_ok_and(|p| p.locked && p.lineage.contains(&place.uuid))
            })
    }

    /// Whether `who` may see the repo rooted at `root` in repo listings.
    pub fn may_list(&self, engine: &Engine, who: &Identity, root: &str) -> bool {
        if !self.enforce || matches!(who, Identity::AdminToken) {
            return true;
        }
        if let Identity::User(c) = who
            && c.role(root).is_some()
        {
            return true;
        }
        self.public_repos.iter().any(|r| r == root)
            || self.public_versions.iter().any(|v| {
                engine
                    .node_place(v)
                    .is_ok_and(|p| p.locked && p.root == root)
            })
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Read => "read",
        Role::Write => "write",
        Role::Admin => "admin",
    }
}

fn unauthenticated(what: &str) -> Denied {
    Denied::Unauthenticated(format!(
        "{what} needs a token: send `Authorization: Bearer <token>` (tokens come from `tessera token new`)"
    ))
}

/// Compares secrets without an early exit, so response times don't reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(enforce: &str) -> Auth {
        Auth::from_config(&AuthConfig {
            enforce: enforce.into(),
            jwt_secret: Some("0123456789abcdef0123456789abcdef".into()),
            admin_token: Some("sesame".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_roles() {
        let a = auth("token");
        let t = a
            .issue("alice", [("r1".to_string(), Role::Write)].into(), None)
            .unwrap();
        let Ok(Identity::User(c)) = a.identify(Some(&t)) else {
            panic!("token not accepted")
        };
        assert_eq!(c.user, "alice");
        assert_eq!(c.role("r1"), Some(Role::Write));
        assert_eq!(c.role("r2"), None);
        assert!(matches!(
            a.identify(Some("sesame")),
            Ok(Identity::AdminToken)
        ));
    }

    #[test]
    fn tampered_expired_or_foreign_tokens_are_refused_when_enforced() {
        let a = auth("token");
        let t = a
            .issue("alice", [("*".to_string(), Role::Read)].into(), None)
            .unwrap();
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            a.identify(Some(&forged)),
            Err(Denied::Unauthenticated(_))
        ));
        let expired = a
            .issue("bob", BTreeMap::new(), Some(Duration::ZERO))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        // jsonwebtoken allows 60 s of leeway by default; a token issued with no lifetime is
        // still refused once that passes, checked here with leeway removed.
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.required_spec_claims.clear();
        let (_, key) = a.keys.as_ref().unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&expired, key, &v).is_err());
        let other = Auth::from_config(&AuthConfig {
            enforce: "token".into(),
            jwt_secret: Some("another secret that is 32 bytes long".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            other.identify(Some(&t)),
            Err(Denied::Unauthenticated(_))
        ));
        // Without enforcement a bad token is ignored, as DVID ignores a wrong admintoken.
        assert!(matches!(
            auth("none").identify(Some(&forged)),
            Ok(Identity::Anonymous)
        ));
    }

    #[test]
    fn token_users_replace_query_users_and_star_admin_is_admin() {
        let a = auth("token");
        let who = Identity::User(Claims {
            user: "alice".into(),
            repos: [("*".to_string(), Role::Admin)].into(),
            iat: 0,
            exp: None,
        });
        let c = a.caller(&who, Some("mallory".into()), None);
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert!(c.admin);
        let c = a.caller(&Identity::Anonymous, Some("bob".into()), None);
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert!(!c.admin);
    }

    #[test]
    fn short_secrets_and_unknown_modes_are_refused() {
        assert!(
            Auth::from_config(&AuthConfig {
                jwt_secret: Some("short".into()),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Auth::from_config(&AuthConfig {
                enforce: "maybe".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
