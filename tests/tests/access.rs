//! Access control (`[auth] enforce = "token"`, docs/access.md) against the real binary:
//! tokens from `tessera token new`, every route the server lists (`GET /api/server/routes`,
//! built from the same table as its router) tried with every method by callers holding no
//! token, a token for another repo, and read, write and admin tokens for the repo; the token's
//! user recorded instead of `u=`; public versions; filtered repo listings; forged tokens; and
//! the admin token from `DVID_ADMIN_TOKEN`.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use tessera_tests::*;

const SECRET: &str = "a test secret that is long enough to sign";
const ADMIN: &str = "sesame-admin";

/// Keywords that only read whatever the method (spec §3.1: `IsMutationRequest` is false for
/// roi `ptquery` and neuronjson `query`, which clients POST).
const READING_KEYWORDS: &[(&str, &str)] = &[("roi", "ptquery"), ("neuronjson", "query")];

/// POSTs DVID reserves to server admins (spec §9), on the label types that serve them.
fn admin_only(typename: &str, keyword: &str) -> bool {
    ["labelmap", "labelarray", "labelvol"].contains(&typename)
        && ["maxlabel", "set-nextlabel"].contains(&keyword)
}

fn config(extra: &str) -> String {
    format!(
        "[auth]\nenforce = \"token\"\njwt_secret = \"{SECRET}\"\nadmin_token = \"{ADMIN}\"\n{extra}"
    )
}

/// A token from the CLI, signed with the config's secret.
fn token(cfg: &std::path::Path, user: &str, repo: &str, role: &str) -> String {
    let out = Command::new(binary_path())
        .args([
            "token", "new", "--user", user, "--repo", repo, "--role", role, "--config",
        ])
        .arg(cfg)
        .output()
        .expect("run tessera token new");
    assert!(
        out.status.success(),
        "tessera token new failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn with_token(srv: &Server, method: &str, path: &str, tok: Option<&str>) -> Response {
    let auth = tok.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let body = (method != "GET" && method != "HEAD").then(Vec::new);
    srv.request(method, path, &headers, body)
}

struct Setup {
    srv: Server,
    root: String,
    other: String,
    cfg: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &str) -> Setup {
        let cfg = tempfile::tempdir().unwrap();
        let text = config(extra);
        std::fs::write(cfg.path().join("tessera.toml"), &text).unwrap();
        let srv = Server::builder().config(&text).start();
        let mut roots = Vec::new();
        for alias in ["guarded", "other"] {
            let r = srv
                .request(
                    "POST",
                    "/api/repos",
                    &[("Authorization", &format!("Bearer {ADMIN}"))],
                    Some(serde_json::to_vec(&json!({ "alias": alias })).unwrap()),
                )
                .expect(200);
            roots.push(r.json()["root"].as_str().unwrap().to_string());
        }
        Setup {
            srv,
            root: roots[0].clone(),
            other: roots[1].clone(),
            cfg,
        }
    }

    fn token(&self, user: &str, repo: &str, role: &str) -> String {
        token(&self.cfg.path().join("tessera.toml"), user, repo, role)
    }

    fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.srv.request(
            "POST",
            path,
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            Some(serde_json::to_vec(body).unwrap()),
        )
    }
}

/// One filled-in route: its path, the access the server declares for it, and for data routes
/// the datatype and keyword.
struct Probe {
    path: String,
    access: String,
    data: Option<(String, String)>,
}

fn probe(path: String, access: &str, data: Option<(String, String)>) -> Probe {
    Probe {
        path,
        access: access.to_string(),
        data,
    }
}

fn allowed(r: &Response) -> bool {
    r.status != 401 && r.status != 403
}

#[test]
fn every_route_checks_rights_for_every_method() {
    let s = Setup::start("");
    let listing = s.srv.get("/api/server/routes").expect(200).json();
    assert_eq!(listing["enforced"], true);
    // One instance of every datatype the server has, to reach every keyword.
    let mut instances: Vec<(String, String)> = Vec::new();
    for typename in listing["keywords"].as_object().unwrap().keys() {
        let name = format!("i_{typename}");
        let r = s.admin_post(
            &format!("/api/repo/{}/instance", s.root),
            &json!({"typename": typename, "dataname": name}),
        );
        if r.status == 200 {
            instances.push((typename.clone(), name));
        } else {
            println!("skipping {typename}: {}", r.text());
        }
    }
    assert!(
        instances.len() >= 10,
        "only {} datatypes could be instantiated",
        instances.len()
    );

    let mut targets: Vec<Probe> = Vec::new();
    let routes = listing["routes"].as_array().unwrap();
    for r in routes {
        let template = r["path"].as_str().unwrap();
        let access = r["access"].as_str().unwrap();
        let fill = |t: &str| {
            t.replace("{uuid}", &s.root)
                .replace("{file}", "index.html")
                .replace("{typename}", "keyvalue")
                .replace("{name}", "master")
                .replace("{*rest}", "x")
        };
        if template.contains("{keyword}") {
            for (typename, name) in &instances {
                for kw in listing["keywords"][typename].as_array().unwrap() {
                    let kw = kw.as_str().unwrap();
                    let path = fill(template)
                        .replace("{data}", name)
                        .replace("{keyword}", kw);
                    targets.push(probe(path, access, Some((typename.clone(), kw.into()))));
                }
            }
        } else if template.contains("{data}") {
            let path = fill(template).replace("{data}", "i_labelmap");
            targets.push(probe(path, access, None));
        } else if template == "/api/server/{action}" {
            for action in ["info", "config"] {
                targets.push(probe(template.replace("{action}", action), access, None));
            }
        } else if template == "/api/node/{uuid}/{action}" {
            for action in ["note", "log", "info"] {
                targets.push(probe(
                    fill(template).replace("{action}", action),
                    access,
                    None,
                ));
            }
        } else {
            targets.push(probe(fill(template), access, None));
        }
    }
    assert!(
        routes.len() >= 20 && targets.len() > 300,
        "{} routes, {} targets",
        routes.len(),
        targets.len()
    );

    let stranger = s.token("carol", &s.other, "admin");
    let reader = s.token("bob", &s.root, "read");
    let writer = s.token("alice", &s.root, "write");
    let owner = s.token("dana", &s.root, "admin");
    let mut tried = 0;
    // Writers last: their writes go through (and may, e.g., add versions).
    for (who, tok) in [
        ("nobody", None),
        ("stranger", Some(&stranger)),
        ("reader", Some(&reader)),
        ("writer", Some(&writer)),
        ("owner", Some(&owner)),
    ] {
        for Probe { path, access, data } in &targets {
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE"] {
                let reads = method == "GET" || method == "HEAD";
                let reading_keyword = data
                    .as_ref()
                    .is_some_and(|(t, k)| READING_KEYWORDS.contains(&(t.as_str(), k.as_str())));
                let admins_only =
                    method == "POST" && data.as_ref().is_some_and(|(t, k)| admin_only(t, k));
                let public =
                    access == "public" || (access == "server-action" && path.ends_with("/info"));
                let expect_allowed = public
                    || match (who, access.as_str()) {
                        ("nobody" | "stranger", _) => false,
                        _ if admins_only => false,
                        (_, "server-write" | "server-admin" | "server-action") => false,
                        ("reader", "data") => reads || reading_keyword,
                        // A transfer's sender answers POSTs that only read.
                        ("reader", "repo-read") => true,
                        ("reader", "import") => false,
                        ("reader", _) => reads,
                        ("writer", "repo-admin") => reads,
                        _ => true,
                    };
                let r = with_token(&s.srv, method, path, tok.map(String::as_str));
                tried += 1;
                if expect_allowed {
                    assert!(allowed(&r), "{who}: {method} {path} refused: {}", r.text());
                } else {
                    let want = if who == "nobody" { 401 } else { 403 };
                    assert_eq!(
                        r.status,
                        want,
                        "{who}: {method} {path} ({access}) answered {} {}",
                        r.status,
                        r.text()
                    );
                    if method != "HEAD" {
                        let msg = r.text();
                        assert!(
                            msg.contains("token") || msg.contains("role"),
                            "{who}: {method} {path}: the refusal does not say why: {msg}"
                        );
                    }
                }
            }
        }
    }
    println!("{tried} requests tried over {} targets", targets.len());
}

#[test]
fn token_user_is_the_recorded_user_and_forgeries_are_refused() {
    let s = Setup::start("");
    s.admin_post(
        &format!("/api/repo/{}/instance", s.root),
        &json!({"typename": "neuronjson", "dataname": "notes"}),
    )
    .expect(200);
    let alice = s.token("alice", &s.root, "write");
    let auth = format!("Bearer {alice}");
    s.srv
        .request(
            "POST",
            &format!("/api/node/{}/notes/key/7?u=mallory", s.root),
            &[("Authorization", &auth)],
            Some(br#"{"bodyid": 7, "name": "seven"}"#.to_vec()),
        )
        .expect(200);
    let rec = s
        .srv
        .request(
            "GET",
            &format!("/api/node/{}/notes/key/7?show=user", s.root),
            &[("Authorization", &auth)],
            None,
        )
        .expect(200)
        .json();
    assert_eq!(rec["name_user"], "alice", "{rec}");

    // The same token with one signature character changed, and a token signed elsewhere.
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let foreign = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "[auth]\njwt_secret = \"another secret, also long enough!!\"\n",
        )
        .unwrap();
        token(&p, "alice", &s.root, "admin")
    };
    for bad in [forged.as_str(), foreign.as_str(), "not-a-token"] {
        let r = with_token(
            &s.srv,
            "GET",
            &format!("/api/node/{}/notes/key/7", s.root),
            Some(bad),
        );
        assert_eq!(r.status, 401, "{bad}: {}", r.text());
        assert!(r.text().contains("invalid token"), "{}", r.text());
    }
    // neuclease sends DVID_ADMIN_TOKEN as `admintoken=`: a signed token works there too.
    s.srv
        .get(&format!(
            "/api/node/{}/notes/key/7?admintoken={alice}",
            s.root
        ))
        .expect(200);
    // The console and `/api/heartbeat` need no token; metrics neither.
    s.srv.get("/").expect(200);
    s.srv.get("/api/heartbeat").expect(200);
    s.srv.get("/metrics").expect(200);
}

#[test]
fn repo_listings_show_only_readable_repos() {
    let s = Setup::start("");
    let bob = s.token("bob", &s.root, "read");
    let all = s.token("root", "*", "read");
    let roots = |tok: Option<&str>| -> Vec<String> {
        let r = with_token(&s.srv, "GET", "/api/repos/info", tok).expect(200);
        let mut v: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(roots(None), Vec::<String>::new());
    assert_eq!(roots(Some(&bob)), vec![s.root.clone()]);
    let mut both = vec![s.root.clone(), s.other.clone()];
    both.sort();
    assert_eq!(roots(Some(&all)), both);
    assert_eq!(roots(Some(ADMIN)), both);
}

#[test]
fn public_versions_and_their_ancestors_are_readable_without_a_token() {
    // The public version must exist before the server reads its config: make the repo with a
    // first server, then restart with the version named public.
    let mut s = Setup::start("");
    s.admin_post(
        &format!("/api/repo/{}/instance", s.root),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(200);
    let put = |uuid: &str, key: &str| {
        s.srv
            .request(
                "POST",
                &format!("/api/node/{uuid}/kv/key/{key}"),
                &[("Authorization", &format!("Bearer {ADMIN}"))],
                Some(b"v".to_vec()),
            )
            .expect(200);
    };
    put(&s.root, "a");
    s.admin_post(&format!("/api/node/{}/commit", s.root), &json!({}))
        .expect(200);
    let mid = s
        .admin_post(&format!("/api/node/{}/newversion", s.root), &json!({}))
        .expect(200)
        .json()["child"]
        .as_str()
        .unwrap()
        .to_string();
    put(&mid, "b");
    s.admin_post(&format!("/api/node/{mid}/commit"), &json!({}))
        .expect(200);
    let open = s
        .admin_post(&format!("/api/node/{mid}/newversion"), &json!({}))
        .expect(200)
        .json()["child"]
        .as_str()
        .unwrap()
        .to_string();
    let text = config(&format!("public_versions = [\"{mid}\"]\n"));
    std::fs::write(s.cfg.path().join("tessera.toml"), &text).unwrap();
    s.srv.stop();
    let srv = Server::builder()
        .config(&text)
        .data_dir(s.srv.data_dir().to_path_buf())
        .start();
    srv.get(&format!("/api/node/{mid}/kv/key/b")).expect(200);
    srv.get(&format!("/api/node/{}/kv/key/a", s.root))
        .expect(200);
    assert_eq!(srv.get(&format!("/api/node/{open}/kv/key/b")).status, 401);
    assert_eq!(
        srv.post(&format!("/api/node/{mid}/kv/key/c"), "v").status,
        401
    );
    let listed = srv.get("/api/repos/info").expect(200).json();
    let mut keys: Vec<&String> = listed.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![&s.root],
        "only the repo holding a public version is listed"
    );
}

#[test]
fn admin_token_comes_from_dvid_admin_token_and_auth_is_off_by_default() {
    let srv = Server::builder()
        .env("DVID_ADMIN_TOKEN", "from-the-environment")
        .start();
    // With an admin token set and auth off, creating a repo needs it (DVID's rule) ...
    assert_eq!(srv.post("/api/repos", "{}").status, 401);
    let r = srv
        .post("/api/repos?admintoken=from-the-environment", "{}")
        .expect(200);
    let root = r.json()["root"].as_str().unwrap().to_string();
    // ... while everything else stays open, and `u=` names the user.
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "neuronjson", "dataname": "notes"}),
    )
    .expect(200);
    srv.post(
        &format!("/api/node/{root}/notes/key/1?u=zoe"),
        r#"{"bodyid": 1, "a": 1}"#,
    )
    .expect(200);
    let rec = srv
        .get(&format!("/api/node/{root}/notes/key/1?show=user"))
        .expect(200)
        .json();
    assert_eq!(rec["a_user"], "zoe");
    let routes: BTreeMap<String, Value> =
        serde_json::from_value(srv.get("/api/server/routes").expect(200).json()).unwrap();
    assert_eq!(routes["enforced"], false);
}

#[test]
fn enforcing_without_any_way_to_sign_in_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, "[auth]\nenforce = \"token\"\n").unwrap();
    let out = Command::new(binary_path())
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env_remove("DVID_ADMIN_TOKEN")
        .env_remove("TESSERA_ADMIN_TOKEN")
        .env_remove("TESSERA_JWT_SECRET")
        .env_remove("DVID_JWT_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt_secret"), "{err}");
}
