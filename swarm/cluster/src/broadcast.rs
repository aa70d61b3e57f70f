//! Broadcast over a remote role: every agent of every worker serving it.
//!
//! A call goes to one member of a role's queue group; a broadcast goes to
//! `skep.<cluster>.bcast.<role>`, which every worker serving the role
//! subscribes to without a queue group. Each worker runs the broadcast over
//! its own agents (the core's local broadcast) and answers once, with all
//! its agents' answers. The caller knows whom to wait for from the
//! heartbeats: the live workers advertising the role when it starts. It
//! gathers until each has answered, or has missed its heartbeats, or the
//! deadline passes; a worker that did not answer becomes one error entry per
//! agent its last heartbeat listed, so the caller sees every agent it
//! expected, and never hangs on a dead worker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Message, StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, code};
use skep_swarm::{BroadcastReply, CallOptions, Settled, SwarmError};
use tokio_util::sync::CancellationToken;

use crate::client::{CancelOnDrop, RemoteClient};
use crate::heartbeat::Heartbeat;
use crate::requests::Requests;
use crate::wire::{self, WireError};
use crate::worker::{BROADCASTS_AT_ONCE, Context, Request, publish};

/// The part of the caller's deadline a worker keeps for its answer to travel
/// back: its agents get the rest, so a slow agent is reported by its worker
/// (as that agent's timeout) rather than taking the whole worker's answer down.
const REPLY_MARGIN: Duration = Duration::from_millis(200);

/// A worker's answer to a broadcast: its agents' answers, or why it has none.
#[derive(Serialize)]
struct Answer<'a> {
    worker: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replies: Option<&'a [BroadcastReply]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObjectOwned>,
}

/// [`Answer`] as the caller reads it.
#[derive(Deserialize)]
struct Heard {
    worker: String,
    #[serde(default)]
    replies: Vec<AgentHeard>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct AgentHeard {
    agent: String,
    ok: Option<Box<RawValue>>,
    error: Option<WireError>,
}

// The worker's side.

/// Serves broadcasts of `role` until `stop`, then drains the subscription.
pub(crate) async fn serve_loop(cx: Context, role: String, sub: Subscriber, stop: CancellationToken) {
    let mut requests = Requests::new(sub, stop, format!("broadcasts of {role}"));
    while let Some((message, reply)) = requests.next().await {
        let Ok(place) = Arc::clone(&cx.broadcasts).try_acquire_owned() else {
            let message = format!("worker {} is serving {BROADCASTS_AT_ONCE} broadcasts already", cx.worker);
            let error = ErrorObjectOwned::owned(code::OVERLOADED, message, None::<()>);
            publish(&cx.client, reply.to_string(), encode(&cx.worker, Err(error))).await;
            continue;
        };
        let (cx, role) = (cx.clone(), role.clone());
        tokio::spawn(async move {
            let answer = answer(&cx, &role, &message).await;
            publish(&cx.client, reply.to_string(), answer).await;
            drop(place);
        });
    }
}

/// Runs one broadcast over this worker's agents of `role` and returns the answer's bytes.
async fn answer(cx: &Context, role: &str, message: &Message) -> Bytes {
    let request = match Request::parse(message) {
        Ok(request) => request,
        Err(error) => return encode(&cx.worker, Err(error)),
    };
    let timeout = request.deadline.map(|d| d.saturating_sub(REPLY_MARGIN.min(d / 4)));
    let options = CallOptions { timeout, ..CallOptions::default() };
    let local = cx.swarm.broadcast(role, &request.method, request.params.as_deref(), options);
    let result = match cx.cancellable(request.id.as_deref(), local).await {
        Some(Ok(replies)) => Ok(replies),
        Some(Err(e)) => Err(e.to_error_object()),
        None => Err(ErrorObjectOwned::owned(code::REQUEST_CANCELLED, "cancelled by the caller", None::<()>)),
    };
    encode(&cx.worker, result)
}

fn encode(worker: &str, result: Result<Vec<BroadcastReply>, ErrorObjectOwned>) -> Bytes {
    let answer = match &result {
        Ok(replies) => Answer { worker, replies: Some(replies), error: None },
        Err(e) => Answer { worker, replies: None, error: Some(e.clone()) },
    };
    Bytes::from(serde_json::to_vec(&answer).expect("a broadcast answer serializes"))
}

// The caller's side.

impl RemoteClient {
    /// Broadcasts `method` to every worker serving `role` and gathers their
    /// agents' answers (see the module's doc); entries are by worker id,
    /// each agent named `role/N@worker`.
    pub(crate) async fn broadcast_all(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        timeout: Duration,
    ) -> Result<Vec<BroadcastReply>, SwarmError> {
        let expected: BTreeMap<String, Heartbeat> = (self.workers.alive().into_iter())
            .filter(|beat| beat.roles.iter().any(|r| r.role == role))
            .map(|beat| (beat.id.clone(), beat))
            .collect();
        let (id, headers) = self.request(method, timeout);
        let payload = params.map_or_else(Bytes::new, |p| Bytes::copy_from_slice(p.get().as_bytes()));
        let mut replies = self.inbox.register();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let subject = self.subjects.broadcast(role);
        let sent = self.client.publish_with_reply_and_headers(subject, replies.subject.clone(), headers, payload);
        if let Err(e) = sent.await {
            let message = format!("the broadcast could not be sent: {e}");
            return Err(SwarmError::Agent(ErrorObjectOwned::owned(code::AGENT_CRASHED, message, None::<()>)));
        }
        // Armed until every worker answered: the stragglers are told to stop.
        let mut cancel = CancelOnDrop { client: &self.client, subject: self.subjects.cancel(), id: Some(id) };
        let mut gone: FuturesUnordered<_> = expected
            .keys()
            .map(|worker| async move {
                self.workers.gone(worker).await;
                worker
            })
            .collect();
        let mut heard: BTreeMap<String, Result<Vec<BroadcastReply>, ErrorObjectOwned>> = BTreeMap::new();
        let mut dead: BTreeSet<String> = BTreeSet::new();
        // With no worker known to wait for, whatever answers by the deadline is all there is.
        while expected.is_empty() || expected.keys().any(|w| !heard.contains_key(w) && !dead.contains(w)) {
            tokio::select! {
                message = replies.messages.recv() => {
                    let Some(message) = message else { break };
                    if message.status == Some(StatusCode::NO_RESPONDERS) {
                        cancel.id = None;
                        return Err(SwarmError::NoWorkers { role: role.to_owned() });
                    }
                    match serde_json::from_slice::<Heard>(&message.payload) {
                        Ok(answer) => {
                            let (worker, result) = read(answer);
                            heard.insert(worker, result);
                        }
                        Err(e) => tracing::debug!(role, %e, "ignoring a broadcast answer that does not parse"),
                    }
                }
                Some(worker) = gone.next() => {
                    dead.insert(worker.clone());
                }
                () = &mut deadline => break,
            }
        }
        if expected.keys().all(|w| heard.contains_key(w)) {
            cancel.id = None;
        }
        let answered: BTreeSet<String> = heard.keys().cloned().collect();
        let mut entries = Vec::new();
        for (worker, result) in heard {
            match result {
                Ok(replies) => entries.extend(replies),
                Err(e) => entries.extend(unanswered(role, &worker, expected.get(&worker), &e)),
            }
        }
        for (worker, beat) in expected.iter().filter(|(worker, _)| !answered.contains(*worker)) {
            let message = match dead.contains(worker) {
                true => {
                    format!("worker {worker} missed its heartbeats during the broadcast: its agents may have run it")
                }
                false => format!("worker {worker} did not answer the broadcast within {timeout:?}"),
            };
            let data = serde_json::json!({ "worker": worker, "role": role });
            let error = ErrorObjectOwned::owned(code::TIMEOUT, message, Some(data));
            entries.extend(unanswered(role, worker, Some(beat), &error));
        }
        Ok(entries)
    }
}

/// A worker's answer as entries named `agent@worker`.
fn read(answer: Heard) -> (String, Result<Vec<BroadcastReply>, ErrorObjectOwned>) {
    let worker = answer.worker;
    if let Some(error) = answer.error {
        return (worker, Err(error.into()));
    }
    let replies = (answer.replies.into_iter())
        .map(|reply| {
            let outcome = match (reply.ok, reply.error) {
                (Some(result), None) => Settled::Ok(result),
                (_, Some(error)) => Settled::Error(error.into()),
                (None, None) => Settled::Error(wire::internal("an agent's broadcast answer has neither ok nor error")),
            };
            BroadcastReply { agent: format!("{}@{worker}", reply.agent), outcome }
        })
        .collect();
    (worker, Ok(replies))
}

/// `error` for each agent of `role` that `worker`'s last heartbeat listed,
/// or one entry for the worker when it listed none.
fn unanswered(role: &str, worker: &str, beat: Option<&Heartbeat>, error: &ErrorObjectOwned) -> Vec<BroadcastReply> {
    let agents: Vec<String> =
        beat.map(|b| b.agents.iter().filter(|a| a.role == role).map(|a| a.id.clone()).collect()).unwrap_or_default();
    let agents = match agents.is_empty() {
        true => vec![format!("{role}/*")],
        false => agents,
    };
    (agents.into_iter())
        .map(|agent| BroadcastReply { agent: format!("{agent}@{worker}"), outcome: Settled::Error(error.clone()) })
        .collect()
}

#[cfg(test)]
mod tests {
    use skep_swarm::RemoteAgent;

    use super::*;

    fn reply(agent: &str, outcome: Settled) -> BroadcastReply {
        BroadcastReply { agent: agent.to_owned(), outcome }
    }

    #[test]
    fn a_workers_answer_crosses_the_wire_as_one_entry_per_agent_named_on_its_worker() {
        let ok = RawValue::from_string("7".to_owned()).expect("valid");
        let failed = ErrorObjectOwned::owned(code::TIMEOUT, "slow", None::<()>);
        let bytes = encode("h-1", Ok(vec![reply("echo/0", Settled::Ok(ok)), reply("echo/1", Settled::Error(failed))]));
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            r#"{"worker":"h-1","replies":[{"agent":"echo/0","ok":7},{"agent":"echo/1","error":{"code":-32001,"message":"slow"}}]}"#
        );
        let (worker, replies) = read(serde_json::from_slice(&bytes).expect("parses"));
        let replies = replies.expect("agents' answers");
        assert_eq!(worker, "h-1");
        assert_eq!(replies.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(), ["echo/0@h-1", "echo/1@h-1"]);
        assert!(matches!(&replies[0].outcome, Settled::Ok(v) if v.get() == "7"));
        assert!(matches!(&replies[1].outcome, Settled::Error(e) if e.code() == code::TIMEOUT));

        let refused = ErrorObjectOwned::owned(code::OVERLOADED, "busy", None::<()>);
        let bytes = encode("h-2", Err(refused));
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            r#"{"worker":"h-2","error":{"code":-32004,"message":"busy"}}"#
        );
        let (_, answer) = read(serde_json::from_slice(&bytes).expect("parses"));
        assert_eq!(answer.expect_err("the worker's error").code(), code::OVERLOADED);
    }

    #[test]
    fn a_silent_worker_is_an_error_entry_per_agent_of_the_role_its_heartbeat_listed() {
        let agent = |id: &str, role: &str| RemoteAgent {
            id: id.to_owned(),
            role: role.to_owned(),
            pid: 9,
            state: "idle".to_owned(),
            calls: 0,
            in_flight: 0,
        };
        let beat = Heartbeat {
            id: "h-3".to_owned(),
            host: "h".to_owned(),
            pid: 3,
            roles: Vec::new(),
            capacity: 2,
            load: 0,
            draining: false,
            interval_ms: 1000,
            agents: vec![agent("echo/0", "echo"), agent("other/0", "other"), agent("echo/1", "echo")],
        };
        let error = ErrorObjectOwned::owned(code::TIMEOUT, "gone", None::<()>);
        let entries = unanswered("echo", "h-3", Some(&beat), &error);
        assert_eq!(entries.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(), ["echo/0@h-3", "echo/1@h-3"]);
        assert!(entries.iter().all(|r| matches!(&r.outcome, Settled::Error(e) if e.code() == code::TIMEOUT)));
        // A worker whose heartbeat listed no agent of the role still shows up, once.
        let entries = unanswered("echo", "h-4", None, &error);
        assert_eq!(entries.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(), ["echo/*@h-4"]);
    }
}
