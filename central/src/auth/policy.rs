//! The permission matrix as data: the permissions, the roles that bundle
//! them, and for every route (method and axum route pattern) whether it is
//! public, open to any signed-in caller, or needs one permission.
//!
//! Deny by default: a matched route that is not in [`ROUTES`] needs
//! `admin`. Requests no route matched are public, so a 404 stays a 404.

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// What a caller may do. One permission guards a group of routes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read every business resource.
    Read,
    /// Fiscal exports (DSFinV-K, TSE TAR files).
    Export,
    /// Create, change and delete master data; stock corrections.
    MasterData,
    /// Issue and cancel delivery notes.
    DeliveryNotes,
    /// Send commands to the boxes' field devices.
    Commands,
    /// Users, tokens, audit log, webhooks, backups, raw master data.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Export,
        Permission::MasterData,
        Permission::DeliveryNotes,
        Permission::Commands,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Export => "export",
            Permission::MasterData => "master_data",
            Permission::DeliveryNotes => "delivery_notes",
            Permission::Commands => "commands",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bundle of permissions given to a user or an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// The office's daily work: master data, delivery notes, exports, commands.
    Office,
    /// Everything, including users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Office, Role::Admin];

    /// The role's permissions, in [`Permission::ALL`] order.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Viewer => &[Read],
            Role::Office => &[Read, Export, MasterData, DeliveryNotes, Commands],
            Role::Admin => &Permission::ALL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Office => "office",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Public,
    /// Any signed-in caller, whatever the role.
    Authenticated,
    /// A caller holding this permission.
    Needs(Permission),
}

/// One line of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The axum route pattern as [`axum::extract::MatchedPath`] reports it.
    pub pattern: &'static str,
    pub access: Access,
}

const fn rule(method: &'static str, pattern: &'static str, access: Access) -> Rule {
    Rule {
        method,
        pattern,
        access,
    }
}

use Access::{Authenticated, Needs, Public};
use Permission::{Admin, Commands, DeliveryNotes, Export, MasterData, Read};

/// Every route of central and what it needs. Keep it complete: a route
/// missing here needs `admin` (and the completeness test fails).
pub const ROUTES: &[Rule] = &[
    // Operations and the office UI's static files.
    rule("GET", "/health", Public),
    rule("GET", "/metrics", Public),
    rule("GET", "/", Public),
    rule("GET", "/ui/{*path}", Public),
    rule("GET", "/api/v1/openapi.json", Public),
    rule("GET", "/api/v1/docs", Public),
    // Signing in and out.
    rule("POST", "/api/v1/auth/login", Public),
    rule("GET", "/api/v1/auth/me", Authenticated),
    rule("POST", "/api/v1/auth/logout", Authenticated),
    rule("POST", "/api/v1/auth/password", Authenticated),
    // Weighing tickets and reports.
    rule("GET", "/api/v1/weighings", Needs(Read)),
    rule("GET", "/api/v1/weighings.csv", Needs(Read)),
    rule("GET", "/api/v1/weighings/{id}", Needs(Read)),
    rule("GET", "/api/v1/reports/weighings", Needs(Read)),
    // Delivery notes.
    rule("GET", "/api/v1/delivery-notes", Needs(Read)),
    rule("GET", "/api/v1/delivery-notes/{id}", Needs(Read)),
    rule("GET", "/api/v1/delivery-notes/{id}/document", Needs(Read)),
    rule("POST", "/api/v1/delivery-notes", Needs(DeliveryNotes)),
    rule(
        "POST",
        "/api/v1/delivery-notes/{id}/cancel",
        Needs(DeliveryNotes),
    ),
    // Stock.
    rule("GET", "/api/v1/stock", Needs(Read)),
    rule("GET", "/api/v1/stock-movements", Needs(Read)),
    rule("POST", "/api/v1/stock-movements", Needs(MasterData)),
    // Master data, one entity at a time.
    rule("GET", "/api/v1/sites", Needs(Read)),
    rule("POST", "/api/v1/sites", Needs(MasterData)),
    rule("GET", "/api/v1/sites/{id}", Needs(Read)),
    rule("PUT", "/api/v1/sites/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/sites/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/partners", Needs(Read)),
    rule("POST", "/api/v1/partners", Needs(MasterData)),
    rule("GET", "/api/v1/partners/{id}", Needs(Read)),
    rule("PUT", "/api/v1/partners/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/partners/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/articles", Needs(Read)),
    rule("POST", "/api/v1/articles", Needs(MasterData)),
    rule("GET", "/api/v1/articles/{id}", Needs(Read)),
    rule("PUT", "/api/v1/articles/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/articles/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/vehicles", Needs(Read)),
    rule("POST", "/api/v1/vehicles", Needs(MasterData)),
    rule("GET", "/api/v1/vehicles/{id}", Needs(Read)),
    rule("PUT", "/api/v1/vehicles/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/vehicles/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/locations", Needs(Read)),
    rule("POST", "/api/v1/locations", Needs(MasterData)),
    rule("GET", "/api/v1/locations/{id}", Needs(Read)),
    rule("PUT", "/api/v1/locations/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/locations/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/lots", Needs(Read)),
    rule("POST", "/api/v1/lots", Needs(MasterData)),
    rule("GET", "/api/v1/lots/{id}", Needs(Read)),
    rule("PUT", "/api/v1/lots/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/lots/{id}", Needs(MasterData)),
    rule("GET", "/api/v1/contracts", Needs(Read)),
    rule("POST", "/api/v1/contracts", Needs(MasterData)),
    rule("GET", "/api/v1/contracts/{id}", Needs(Read)),
    rule("PUT", "/api/v1/contracts/{id}", Needs(MasterData)),
    rule("DELETE", "/api/v1/contracts/{id}", Needs(MasterData)),
    // The whole master-data document the boxes get.
    rule("GET", "/api/v1/master-data", Needs(Read)),
    rule("PUT", "/api/v1/master-data", Needs(Admin)),
    // Boxes, their field devices and commands.
    rule("GET", "/api/v1/devices", Needs(Read)),
    rule("PATCH", "/api/v1/devices/{device_id}", Needs(Admin)),
    rule(
        "POST",
        "/api/v1/devices/{device_id}/commands",
        Needs(Commands),
    ),
    rule("GET", "/api/v1/field-values", Needs(Read)),
    rule("GET", "/api/v1/live-values", Needs(Read)),
    rule("GET", "/api/v1/commands", Needs(Read)),
    rule("GET", "/api/v1/commands/{id}", Needs(Read)),
    // The cash desks and their TSEs.
    rule("GET", "/api/v1/cash-sales", Needs(Read)),
    rule("GET", "/api/v1/cash-sales/{id}", Needs(Read)),
    rule("GET", "/api/v1/tse-outages", Needs(Read)),
    rule("GET", "/api/v1/tses", Needs(Read)),
    rule("GET", "/api/v1/tses/{serial}/export", Needs(Export)),
    rule("GET", "/api/v1/dsfinvk", Needs(Export)),
    // Integration events and webhooks.
    rule("GET", "/api/v1/events", Needs(Read)),
    rule("GET", "/api/v1/webhooks", Needs(Admin)),
    rule("POST", "/api/v1/webhooks", Needs(Admin)),
    rule("GET", "/api/v1/webhooks/{id}", Needs(Admin)),
    rule("DELETE", "/api/v1/webhooks/{id}", Needs(Admin)),
    rule("GET", "/api/v1/webhooks/{id}/deliveries", Needs(Admin)),
    rule(
        "POST",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
        Needs(Admin),
    ),
    // Operations.
    rule("GET", "/api/v1/backups", Needs(Admin)),
    rule("POST", "/api/v1/backups", Needs(Admin)),
    rule("GET", "/api/v1/dead-letters", Needs(Admin)),
    // Users, API tokens and the audit log.
    rule("GET", "/api/v1/users", Needs(Admin)),
    rule("POST", "/api/v1/users", Needs(Admin)),
    rule("PATCH", "/api/v1/users/{username}", Needs(Admin)),
    rule("GET", "/api/v1/tokens", Needs(Admin)),
    rule("POST", "/api/v1/tokens", Needs(Admin)),
    rule("DELETE", "/api/v1/tokens/{id}", Needs(Admin)),
    rule("GET", "/api/v1/audit-log", Needs(Admin)),
];

/// The explicit rule for a route, if the table has one.
pub fn explicit(method: &str, pattern: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.pattern == pattern)
        .map(|r| r.access)
}

/// What a request needs. `pattern` is the matched route (`None`: no route
/// matched, the fallback answers 404). HEAD is answered by GET routes and
/// needs what GET needs.
pub fn access(method: &Method, pattern: Option<&str>) -> Access {
    let Some(pattern) = pattern else {
        return Public;
    };
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    explicit(method, pattern).unwrap_or(Needs(Admin))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route central serves (or will serve under this contract), by
    /// the group the matrix puts it in.
    const ALL_ROUTES: &[(&str, &str, Access)] = &[
        ("GET", "/health", Public),
        ("GET", "/metrics", Public),
        ("GET", "/", Public),
        ("GET", "/ui/{*path}", Public),
        ("GET", "/api/v1/openapi.json", Public),
        ("GET", "/api/v1/docs", Public),
        ("POST", "/api/v1/auth/login", Public),
        ("GET", "/api/v1/auth/me", Authenticated),
        ("POST", "/api/v1/auth/logout", Authenticated),
        ("POST", "/api/v1/auth/password", Authenticated),
        ("GET", "/api/v1/weighings", Needs(Read)),
        ("GET", "/api/v1/weighings.csv", Needs(Read)),
        ("GET", "/api/v1/weighings/{id}", Needs(Read)),
        ("GET", "/api/v1/reports/weighings", Needs(Read)),
        ("GET", "/api/v1/delivery-notes", Needs(Read)),
        ("GET", "/api/v1/delivery-notes/{id}", Needs(Read)),
        ("GET", "/api/v1/delivery-notes/{id}/document", Needs(Read)),
        ("POST", "/api/v1/delivery-notes", Needs(DeliveryNotes)),
        (
            "POST",
            "/api/v1/delivery-notes/{id}/cancel",
            Needs(DeliveryNotes),
        ),
        ("GET", "/api/v1/stock", Needs(Read)),
        ("GET", "/api/v1/stock-movements", Needs(Read)),
        ("POST", "/api/v1/stock-movements", Needs(MasterData)),
        ("GET", "/api/v1/master-data", Needs(Read)),
        ("PUT", "/api/v1/master-data", Needs(Admin)),
        ("GET", "/api/v1/devices", Needs(Read)),
        ("PATCH", "/api/v1/devices/{device_id}", Needs(Admin)),
        (
            "POST",
            "/api/v1/devices/{device_id}/commands",
            Needs(Commands),
        ),
        ("GET", "/api/v1/field-values", Needs(Read)),
        ("GET", "/api/v1/live-values", Needs(Read)),
        ("GET", "/api/v1/commands", Needs(Read)),
        ("GET", "/api/v1/commands/{id}", Needs(Read)),
        ("GET", "/api/v1/cash-sales", Needs(Read)),
        ("GET", "/api/v1/cash-sales/{id}", Needs(Read)),
        ("GET", "/api/v1/tse-outages", Needs(Read)),
        ("GET", "/api/v1/tses", Needs(Read)),
        ("GET", "/api/v1/tses/{serial}/export", Needs(Export)),
        ("GET", "/api/v1/dsfinvk", Needs(Export)),
        ("GET", "/api/v1/events", Needs(Read)),
        ("GET", "/api/v1/webhooks", Needs(Admin)),
        ("POST", "/api/v1/webhooks", Needs(Admin)),
        ("GET", "/api/v1/webhooks/{id}", Needs(Admin)),
        ("DELETE", "/api/v1/webhooks/{id}", Needs(Admin)),
        ("GET", "/api/v1/webhooks/{id}/deliveries", Needs(Admin)),
        (
            "POST",
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            Needs(Admin),
        ),
        ("GET", "/api/v1/backups", Needs(Admin)),
        ("POST", "/api/v1/backups", Needs(Admin)),
        ("GET", "/api/v1/dead-letters", Needs(Admin)),
        ("GET", "/api/v1/users", Needs(Admin)),
        ("POST", "/api/v1/users", Needs(Admin)),
        ("PATCH", "/api/v1/users/{username}", Needs(Admin)),
        ("GET", "/api/v1/tokens", Needs(Admin)),
        ("POST", "/api/v1/tokens", Needs(Admin)),
        ("DELETE", "/api/v1/tokens/{id}", Needs(Admin)),
        ("GET", "/api/v1/audit-log", Needs(Admin)),
    ];

    const MASTER_DATA_KINDS: [&str; 7] = [
        "sites",
        "partners",
        "articles",
        "vehicles",
        "locations",
        "lots",
        "contracts",
    ];

    #[test]
    fn every_route_has_an_explicit_entry_with_the_agreed_access() {
        let mut routes: Vec<(String, String, Access)> = ALL_ROUTES
            .iter()
            .map(|(m, p, a)| ((*m).to_owned(), (*p).to_owned(), *a))
            .collect();
        for kind in MASTER_DATA_KINDS {
            let one = format!("/api/v1/{kind}/{{id}}");
            routes.push(("GET".into(), format!("/api/v1/{kind}"), Needs(Read)));
            routes.push(("POST".into(), format!("/api/v1/{kind}"), Needs(MasterData)));
            routes.push(("GET".into(), one.clone(), Needs(Read)));
            routes.push(("PUT".into(), one.clone(), Needs(MasterData)));
            routes.push(("DELETE".into(), one, Needs(MasterData)));
        }
        for (method, pattern, expected) in &routes {
            assert_eq!(
                explicit(method, pattern),
                Some(*expected),
                "{method} {pattern}"
            );
        }
        // And the table holds nothing the list does not know.
        for rule in ROUTES {
            assert!(
                routes
                    .iter()
                    .any(|(m, p, _)| m == rule.method && p == rule.pattern),
                "{} {} is in the table but not in the list of routes",
                rule.method,
                rule.pattern
            );
        }
    }

    #[test]
    fn the_table_has_no_route_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.pattern == b.pattern),
                    "{} {} twice",
                    a.method,
                    a.pattern
                );
            }
        }
    }

    /// Routes declared in the source (`.route("/...", get(..).post(..))`),
    /// read from the files, so a route added without a line in the matrix
    /// fails here instead of silently needing `admin`.
    fn declared_routes() -> Vec<(String, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut routes = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Test modules build routers of their own.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut rest = text;
            while let Some(at) = rest.find(".route(\"") {
                rest = &rest[at + ".route(\"".len()..];
                let Some(end) = rest.find('"') else { break };
                let pattern = rest[..end].to_owned();
                // The method router: up to the parenthesis closing `.route(`.
                let mut depth = 1usize;
                let mut close = rest.len();
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                close = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let methods = &rest[end..close];
                for (method, call) in [
                    ("GET", "get("),
                    ("POST", "post("),
                    ("PUT", "put("),
                    ("PATCH", "patch("),
                    ("DELETE", "delete("),
                ] {
                    let called = methods.match_indices(call).any(|(i, _)| {
                        // `get(` itself, not `forget(` or `budget(`.
                        !methods[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                    });
                    if called {
                        routes.push((method.to_owned(), pattern.clone()));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_declared_in_the_source_is_in_the_table() {
        let declared = declared_routes();
        assert!(
            declared
                .iter()
                .any(|(m, p)| m == "GET" && p == "/api/v1/weighings"),
            "the scan finds the routes: {declared:?}"
        );
        let missing: Vec<String> = declared
            .iter()
            .filter(|(m, p)| explicit(m, p).is_none())
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert!(missing.is_empty(), "routes without a rule: {missing:?}");
    }

    #[test]
    fn unknown_routes_need_admin_and_unmatched_ones_are_public() {
        assert_eq!(
            access(&Method::GET, Some("/api/v1/secret-new-thing")),
            Needs(Admin)
        );
        assert_eq!(
            access(&Method::DELETE, Some("/api/v1/weighings/{id}")),
            Needs(Admin)
        );
        assert_eq!(access(&Method::POST, None), Public);
        assert_eq!(access(&Method::HEAD, Some("/health")), Public);
        assert_eq!(
            access(&Method::HEAD, Some("/api/v1/weighings")),
            Needs(Read)
        );
    }

    #[test]
    fn roles_bundle_the_agreed_permissions() {
        let cases: [(Role, &[Permission]); 3] = [
            (Role::Viewer, &[Read]),
            (
                Role::Office,
                &[Read, Export, MasterData, DeliveryNotes, Commands],
            ),
            (Role::Admin, &Permission::ALL),
        ];
        for (role, expected) in cases {
            assert_eq!(role.permissions(), expected, "{role}");
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Some(permission));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
