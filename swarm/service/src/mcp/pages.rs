//! A server's list, every page of it: MCP lists (`tools/list`,
//! `resources/list`, `resources/templates/list`, `prompts/list`) may come in
//! pages, each naming the next with `nextCursor`. The gateway merges whole
//! lists, so it follows the cursors to the end; each page is one call on the
//! role's pool (cached like the first when the list is idempotent).

use std::collections::HashSet;

use serde_json::{Value, json};
use skep_bridge::{ErrorObjectOwned, code};
use skep_swarm::{CallOptions, Swarm, SwarmError};

/// How many pages of one list are read at most: a server whose cursors never
/// end must not hold a list answer forever (the list's own timeout bounds it
/// in time; this bounds its size).
const MAX_PAGES: usize = 100;

/// The items (under `field`) of every page of `method` on `role`, in order.
pub(crate) async fn all_items(
    swarm: &Swarm,
    role: &str,
    method: &str,
    field: &str,
    options: CallOptions,
) -> Result<Vec<Value>, SwarmError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            None => json!({}),
            Some(cursor) => json!({ "cursor": cursor }),
        };
        let params = serde_json::value::to_raw_value(&params).expect("a JSON object encodes");
        let raw = swarm.call(role, method, Some(&params), options).await?;
        let mut page: Value = serde_json::from_str(raw.get()).map_err(|e| not_a_list(method, &e))?;
        if let Some(Value::Array(more)) = page.get_mut(field).map(Value::take) {
            items.extend(more);
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            None => return Ok(items),
            // A cursor seen before would loop: what was read is the list.
            Some(next) if !seen.insert(next.to_owned()) => {
                tracing::warn!(role, method, cursor = next, "a server repeated a cursor; its list ends there");
                return Ok(items);
            }
            Some(next) => cursor = Some(next.to_owned()),
        }
    }
    tracing::warn!(role, method, "a server's list has over {MAX_PAGES} pages; the rest is left out");
    Ok(items)
}

fn not_a_list(method: &str, e: &serde_json::Error) -> SwarmError {
    let message = format!("its {method} answer is not JSON ({e})");
    SwarmError::Agent(ErrorObjectOwned::owned(code::INTERNAL_ERROR, message, None::<()>))
}
