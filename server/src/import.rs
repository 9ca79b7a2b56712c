//! Bulk import: NDJSON lines of `warehouse`, `sku`, `dealer`, `promotion` or `stock`
//! objects, the same for `POST /admin/import` and `allot import`. `allot import` loads
//! a file into a *stopped* server's data dir through the same shards (and so the same
//! log) the server uses, then snapshots; it refuses nothing a running server would
//! accept, and never runs beside a server on the same dir.

use std::path::Path;
use std::sync::Arc;

use allot_engine::Command;
use serde_json::Value;

use crate::config::Config;
use crate::dto::{from_value, DealerBody, PromotionBody, SkuBody, StockLine, WarehouseBody};
use crate::error::ApiError;
use crate::shard::{Shards, Work};

/// Commands applied per shard job, so that an import interleaves with other traffic.
pub const CHUNK_COMMANDS: usize = 256;

/// One NDJSON line into a command: 400 if it is not JSON, 422 if its shape is wrong.
pub fn parse_line(line: &str) -> Result<Command, ApiError> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| ApiError::malformed(format!("the line is not JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid(".", "each line must be a JSON object"));
    };
    let Some(Value::String(kind)) = map.remove("type") else {
        return Err(ApiError::invalid("type", "missing or non-string `type`"));
    };
    let rest = Value::Object(map);
    match kind.as_str() {
        "warehouse" => from_value::<WarehouseBody>(rest)?.into_command(None),
        "sku" => from_value::<SkuBody>(rest)?.into_command(None),
        "dealer" => from_value::<DealerBody>(rest)?.into_command(None),
        "promotion" => from_value::<PromotionBody>(rest)?.into_command(None),
        "stock" => {
            let line: StockLine = from_value(rest)?;
            Ok(Command::Adjust {
                sku: line.sku,
                warehouse: line.warehouse,
                on_hand: line.on_hand,
            })
        }
        other => Err(ApiError::invalid("type", format!("unknown type `{other}`"))),
    }
}

/// What an offline import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub applied: u64,
    /// (line number, code, message) of each refused line.
    pub errors: Vec<(usize, String, String)>,
}

/// Imports `file` into the stopped server's data dir for `tenant`.
pub fn import_file(config: Config, tenant: &str, file: &Path) -> Result<ImportReport, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let config = Arc::new(config);
    let (shards, started) = Shards::start(Arc::clone(&config))?;
    for _ in 0..shards.len() {
        match started.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => {
                shards.stop();
                return Err(why);
            }
            Err(_) => return Err("a shard stopped during recovery".into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut report = ImportReport::default();
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(command) => commands.push((i + 1, command)),
            Err(e) => report.errors.push((i + 1, e.code.to_owned(), e.message)),
        }
    }
    let result = runtime.block_on(async {
        for chunk in commands.chunks(CHUNK_COMMANDS) {
            let lines: Vec<usize> = chunk.iter().map(|(n, _)| *n).collect();
            let work = Work::Commands(chunk.iter().map(|(_, c)| c.clone()).collect());
            let refused: Vec<(usize, String, String)> = shards
                .call(tenant, work, move |ctx| {
                    Ok(ctx
                        .outcomes
                        .iter()
                        .zip(&lines)
                        .filter_map(|(o, n)| {
                            let r = o.result.as_ref().err()?;
                            Some((*n, r.code().to_owned(), r.to_string()))
                        })
                        .collect())
                })
                .await
                .map_err(|e| e.message)?;
            report.applied += (chunk.len() - refused.len()) as u64;
            report.errors.extend(refused);
        }
        Ok::<(), String>(())
    });
    shards.stop();
    result?;
    report.errors.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_every_type_parse() {
        assert!(matches!(
            parse_line(r#"{"type":"warehouse","code":"W1","region":"north"}"#),
            Ok(Command::PutWarehouse(_))
        ));
        assert!(matches!(
            parse_line(r#"{"type":"sku","code":"S1","base_price":100}"#),
            Ok(Command::PutSku(_))
        ));
        assert!(matches!(
            parse_line(
                r#"{"type":"dealer","code":"D1","tier":"gold","region":"north","credit_limit":5}"#
            ),
            Ok(Command::PutDealer(_))
        ));
        assert!(matches!(
            parse_line(r#"{"type":"stock","sku":"S1","warehouse":"W1","on_hand":5}"#),
            Ok(Command::Adjust { .. })
        ));
        assert!(matches!(
            parse_line(
                r#"{"type":"promotion","code":"P","sku":"S1","price":1,"starts_at":"2024-01-01T00:00:00Z","ends_at":"2025-01-01T00:00:00Z"}"#
            ),
            Ok(Command::PutPromotion(_))
        ));
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(parse_line("{").expect_err("x").code, "malformed");
        assert_eq!(
            parse_line(r#"{"type":"nope"}"#).expect_err("x").details["field"],
            "type"
        );
        assert_eq!(
            parse_line(r#"{"type":"sku","code":"S","base_price":1,"x":1}"#)
                .expect_err("x")
                .details["field"],
            "x"
        );
    }
}
