//! Picking a role for free text: every role's `route` patterns compiled once
//! into one `RegexSet`, so a lookup scans the text once whatever the number
//! of roles. The first role (by name) with a matching pattern wins.

use regex::RegexSet;

use crate::config::RoleConfig;
use crate::error::SwarmError;

/// The compiled `route` patterns of all roles.
#[derive(Debug)]
pub(crate) struct Router {
    set: RegexSet,
    /// For each pattern of the set, the index of its role in `roles`.
    owner: Vec<usize>,
    /// Role names with their patterns, for errors.
    roles: Vec<(String, Vec<String>)>,
}

impl Router {
    /// Compiles the patterns; config loading has already checked each one.
    pub(crate) fn new<'a>(roles: impl IntoIterator<Item = &'a RoleConfig>) -> Router {
        let roles: Vec<(String, Vec<String>)> = roles.into_iter().map(|r| (r.name.clone(), r.route.clone())).collect();
        let (owner, patterns): (Vec<usize>, Vec<&str>) =
            roles.iter().enumerate().flat_map(|(i, (_, ps))| ps.iter().map(move |p| (i, p.as_str()))).unzip();
        let set = RegexSet::new(patterns).expect("route patterns were validated when the config was loaded");
        Router { set, owner, roles }
    }

    /// The role whose patterns match `text`.
    pub(crate) fn route(&self, text: &str) -> Result<&str, SwarmError> {
        let first = self.set.matches(text).iter().map(|pattern| self.owner[pattern]).min();
        match first {
            Some(role) => Ok(&self.roles[role].0),
            None => Err(SwarmError::NoRoute { text: text.chars().take(200).collect(), routes: self.roles.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, route: &[&str]) -> RoleConfig {
        let mut role = RoleConfig::with_command(name, vec!["agent".into()]);
        role.route = route.iter().map(|p| (*p).to_owned()).collect();
        role
    }

    #[test]
    fn the_first_role_with_a_match_wins() {
        let roles = [role("a-lint", &["lint", "clippy"]), role("b-review", &[r"^review\b", "lint"]), role("c", &[])];
        let router = Router::new(&roles);
        assert_eq!(router.route("review this diff").ok(), Some("b-review"));
        assert_eq!(router.route("please lint and review").ok(), Some("a-lint"));
        assert_eq!(router.route("run clippy").ok(), Some("a-lint"));
        let err = router.route("reviewer wanted").expect_err("no role matches");
        assert_eq!(err.code(), -32602);
        let data = err.to_error_object().data().map(|d| d.get().to_owned()).expect("data");
        assert!(data.contains(r#""b-review":["^review\\b","lint"]"#), "{data}");
    }
}
