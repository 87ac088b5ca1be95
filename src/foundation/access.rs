//! Who may do what: the console's roles and the API tokens' scopes. The route tables of the
//! console and the API name, for each route, the role or scope it needs; the guards check them.

use std::fmt;

/// An editor's role. Each role may do what the one before it may, and more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Drafts and previews issues, sends test copies, reads reports.
    Author,
    /// Also sends and schedules issues, runs or skips the digest, manages subscribers and
    /// articles.
    Editor,
    /// Also manages accounts, API tokens, webhooks and settings, and reads the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Author, Role::Editor, Role::Admin];

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "author" => Ok(Role::Author),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected author, editor or admin"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Author => "author",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an API token may do. A token holds a set of scopes; each API operation needs one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ArticlesRead,
    ArticlesWrite,
    BouncesWrite,
    SubscribersRead,
    SubscribersWrite,
    IssuesRead,
    IssuesWrite,
    IssuesSend,
    DigestRun,
    MetricsRead,
    WebhooksWrite,
    /// The admin scope: the audit log.
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 12] = [
        Scope::ArticlesRead,
        Scope::ArticlesWrite,
        Scope::BouncesWrite,
        Scope::SubscribersRead,
        Scope::SubscribersWrite,
        Scope::IssuesRead,
        Scope::IssuesWrite,
        Scope::IssuesSend,
        Scope::DigestRun,
        Scope::MetricsRead,
        Scope::WebhooksWrite,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ArticlesRead => "articles:read",
            Scope::ArticlesWrite => "articles:write",
            Scope::BouncesWrite => "bounces:write",
            Scope::SubscribersRead => "subscribers:read",
            Scope::SubscribersWrite => "subscribers:write",
            Scope::IssuesRead => "issues:read",
            Scope::IssuesWrite => "issues:write",
            Scope::IssuesSend => "issues:send",
            Scope::DigestRun => "digest:run",
            Scope::MetricsRead => "metrics:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::AuditRead => "audit:read",
        }
    }

    /// What the scope lets a token do, as the console and the documentation say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Scope::ArticlesRead => "list and read articles",
            Scope::ArticlesWrite => "push and edit articles (the site's CMS)",
            Scope::BouncesWrite => "report bounces and complaints (the MTA's bounce pipe)",
            Scope::SubscribersRead => "list and read subscribers (addresses: personal data)",
            Scope::SubscribersWrite => "add, unsubscribe and erase subscribers",
            Scope::IssuesRead => "list issues, their engagement and the digest preview",
            Scope::IssuesWrite => "create draft issues",
            Scope::IssuesSend => "send and schedule issues to every reader",
            Scope::DigestRun => "run the digest now",
            Scope::MetricsRead => "read /metrics",
            Scope::WebhooksWrite => "list, create and delete webhooks",
            Scope::AuditRead => "read the audit log (the admin scope)",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim().to_ascii_lowercase();
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                format!(
                    "unknown scope {raw:?}: expected one of {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
    }

    /// A comma-separated list of scopes (at least one; duplicates dropped, in a fixed order).
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = raw
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err("give at least one scope".into());
        }
        Ok(scopes)
    }

    /// Scopes as stored and shown: comma-separated.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an API token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A token made before scopes existed: it keeps full access (the console marks it).
    Legacy,
    Scopes(Vec<Scope>),
}

impl Grant {
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Grant::Legacy => true,
            Grant::Scopes(scopes) => scopes.contains(&scope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_back() {
        assert!(Role::Admin.allows(Role::Editor));
        assert!(Role::Editor.allows(Role::Author));
        assert!(!Role::Author.allows(Role::Editor));
        assert!(!Role::Editor.allows(Role::Admin));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn scope_lists_parse_and_refuse_unknown_names() {
        assert_eq!(
            Scope::parse_list("issues:send, articles:write,issues:send"),
            Ok(vec![Scope::ArticlesWrite, Scope::IssuesSend])
        );
        let err = Scope::parse_list("issues:send,everything").unwrap_err();
        assert!(
            err.contains("everything") && err.contains("metrics:read"),
            "{err}"
        );
        assert!(Scope::parse_list(" , ").is_err());
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        let grant = Grant::Scopes(vec![Scope::BouncesWrite]);
        assert!(grant.allows(Scope::BouncesWrite));
        assert!(!grant.allows(Scope::SubscribersRead));
        assert!(Grant::Legacy.allows(Scope::AuditRead));
    }
}
