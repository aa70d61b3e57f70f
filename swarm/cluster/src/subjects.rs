//! The subjects and headers of the wire, named once.
//!
//! Every subject starts with `skep.<cluster>`, so several clusters can share
//! one NATS server and an account's permissions can be scoped to one of them.

/// The header naming the method of a call (the payload is its params, untouched).
pub const METHOD: &str = "Skep-Method";
/// The header carrying a call's id, which its cancellation names.
pub const CALL_ID: &str = "Skep-Call-Id";
/// The header of a worker's notice that it took a call: its id, whose heartbeats the caller then watches.
pub const TAKEN_BY: &str = "Skep-Taken-By";
/// The header carrying the caller's deadline: milliseconds the call may still take.
pub const DEADLINE_MS: &str = "Skep-Deadline-Ms";

/// The subjects of one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subjects of the cluster `name` (a subject token: no dots, checked by the config).
    pub fn new(name: &str) -> Subjects {
        Subjects { prefix: format!("skep.{name}") }
    }

    /// Where calls of `role` go; its workers listen in queue group `role`.
    pub fn call(&self, role: &str) -> String {
        format!("{}.call.{role}", self.prefix)
    }

    /// Where broadcasts of `role` go; every worker serving it listens (no queue group).
    pub fn broadcast(&self, role: &str) -> String {
        format!("{}.bcast.{role}", self.prefix)
    }

    /// Where workers publish their heartbeats.
    pub fn workers(&self) -> String {
        format!("{}.workers", self.prefix)
    }

    /// Where callers publish the id of a call they gave up on; every worker listens.
    pub fn cancel(&self) -> String {
        format!("{}.cancel", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_scoped_by_cluster() {
        let s = Subjects::new("prod");
        assert_eq!(s.call("review"), "skep.prod.call.review");
        assert_eq!(s.broadcast("review"), "skep.prod.bcast.review");
        assert_eq!(s.workers(), "skep.prod.workers");
        assert_eq!(s.cancel(), "skep.prod.cancel");
    }
}
