//! The shard path the server runs, on simulated storage: stamp a monotonic time,
//! apply to the ledger, log every command that changed it as a WAL record
//! (`{tenant, at_ms, command}`), and treat it as acknowledged only once the WAL's
//! completion reports it durable. Restart = drop the WAL, reopen the storage,
//! restore the newest snapshot and replay the records after it.
//!
//! The shard also keeps the book-keeping the auditor needs: every record it
//! submitted (in order, with the ledger digest after it), how many of them were
//! acknowledged, and the digest behind every snapshot it wrote.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

use allot_engine::{Command, DealerSpec, Event, Ledger, Outcome};
use allot_engine::{Effect, OrderAction, OrderId};
use allot_wal::{open, MemStorage, Storage, Wal, WalConfig, WalError};

use crate::faults::LyingStorage;

pub const TENANT: &str = "sim";

/// Deliberately broken variants, built only for the teeth tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// None: the real engine and the real WAL.
    None,
    /// Storage reports `sync_data` done without making anything durable.
    LyingFsync,
    /// The shard acknowledges every 40th record without putting it in the log.
    DropRecord,
    /// Placements skip the credit check (the shard lifts the dealer's limit around
    /// each placement).
    SkipCreditCheck,
    /// Confirms report success but leave the ledger unchanged.
    SkipConfirm,
}

/// One record the shard submitted.
#[derive(Clone, Debug)]
pub struct Entry {
    pub payload: Vec<u8>,
    pub at_ms: u64,
    pub command: Command,
    /// Ledger digest after applying this record (and everything before it).
    pub digest: [u8; 32],
}

/// What one command did on the live shard.
pub struct Applied {
    pub at_ms: u64,
    pub command: Command,
    pub outcome: Outcome,
    /// An invariant the engine broke with this command, seen from its answers.
    pub violation: Option<String>,
}

/// The log payload is the server's own (`allot_server::shard::encode_entry`), so
/// the simulation writes and replays exactly the bytes the server does.
pub fn encode_payload(tenant: &str, at_ms: u64, command: &Command) -> Vec<u8> {
    allot_server::shard::encode_entry(tenant, at_ms, command)
}

pub fn decode_payload(payload: &[u8]) -> Result<(String, u64, Command), String> {
    let entry = allot_server::shard::decode_entry(payload)?;
    Ok((entry.tenant, entry.at_ms, entry.command))
}

pub struct SimShard {
    /// The simulated disk; survives restarts.
    pub mem: MemStorage,
    pub config: WalConfig,
    pub bug: Bug,
    wal: Option<Wal>,
    pub ledger: Ledger,
    pub now_ms: u64,
    events: Vec<Event>,
    /// Every record submitted since the log began, in order (`log[i]` is seq i + 1).
    pub log: Vec<Entry>,
    /// `log[..acked]` were acknowledged durable.
    pub acked: usize,
    /// Digest of the ledger each written snapshot holds, by covered seq.
    pub snapshot_digests: BTreeMap<u64, [u8; 32]>,
    records_submitted: u64,
}

/// What recovery found, for the auditor.
pub struct Recovered {
    pub snapshot_seq: u64,
    pub records: u64,
    pub torn_bytes: u64,
}

impl SimShard {
    pub fn new(config: WalConfig, bug: Bug, now_ms: u64) -> Result<Self, String> {
        let mut shard = Self {
            mem: MemStorage::new(),
            config,
            bug,
            wal: None,
            ledger: Ledger::default(),
            now_ms,
            events: Vec::new(),
            log: Vec::new(),
            acked: 0,
            snapshot_digests: BTreeMap::new(),
            records_submitted: 0,
        };
        shard.recover()?;
        Ok(shard)
    }

    fn storage(&self) -> Arc<dyn Storage> {
        let handle = self.mem.restarted();
        if self.bug == Bug::LyingFsync {
            Arc::new(LyingStorage::new(handle))
        } else {
            Arc::new(handle)
        }
    }

    pub fn is_up(&self) -> bool {
        self.wal.is_some()
    }

    /// Apply one command now (after moving the clock `advance_ms`), queueing its
    /// record if it changed the ledger.
    fn apply_one(
        &mut self,
        advance_ms: u64,
        command: Command,
        records: &mut Vec<Vec<u8>>,
    ) -> Applied {
        self.now_ms += advance_ms;
        let at_ms = self.now_ms;
        let outcome = match (self.bug, &command) {
            (Bug::SkipCreditCheck, Command::PlaceOrder(request)) => {
                self.place_without_credit_check(at_ms, &command, &request.dealer, records)
            }
            (
                Bug::SkipConfirm,
                Command::ActOnOrder {
                    action: OrderAction::Confirm,
                    ..
                },
            ) => {
                // Reports exactly what the real confirm reports; only the book does
                // not move, so only the audit of the views can tell.
                let before = self.ledger.clone();
                let outcome = self.ledger.apply(at_ms, &command, &mut self.events);
                if matches!(outcome.result, Ok(Effect::OrderUpdated(_))) {
                    self.ledger = before;
                }
                outcome
            }
            _ => self.logged_apply(at_ms, &command, records),
        };
        let violation = match outcome.result {
            Ok(Effect::OrderPlaced(id)) => self.placement_violation(id),
            _ => None,
        };
        Applied {
            at_ms,
            command,
            outcome,
            violation,
        }
    }

    /// Right after a placement: the dealer is within its credit limit, and every
    /// promotion that priced a line is within its quota and per-dealer limit.
    fn placement_violation(&self, id: OrderId) -> Option<String> {
        let order = self.ledger.order(id)?;
        let view = self
            .ledger
            .dealer(self.ledger.dealer_code(order.dealer))
            .ok()?;
        if view.credit_held + view.credit_used > view.credit_limit {
            return Some(format!(
                "order {id} took dealer {} past its limit: {view:?}",
                view.code
            ));
        }
        let state = self.ledger.state();
        for line in &order.lines {
            let Some(p) = line.promotion else { continue };
            let promotion = &state.promotions[p.index()];
            let key = (u64::from(p.0) << 32) | u64::from(order.dealer.0);
            let mine = state.promotion_usage.get(&key).copied().unwrap_or(0);
            if promotion.quota.is_some_and(|q| promotion.used > q)
                || promotion.per_dealer_limit.is_some_and(|l| mine > l)
            {
                return Some(format!(
                    "order {id} broke promotion {}'s quota",
                    promotion.code
                ));
            }
        }
        None
    }

    fn logged_apply(
        &mut self,
        at_ms: u64,
        command: &Command,
        records: &mut Vec<Vec<u8>>,
    ) -> Outcome {
        self.events.clear();
        let outcome = self.ledger.apply(at_ms, command, &mut self.events);
        if outcome.changed {
            let payload = encode_payload(TENANT, at_ms, command);
            self.records_submitted += 1;
            if !(self.bug == Bug::DropRecord && self.records_submitted % 40 == 0) {
                records.push(payload.clone());
            }
            self.log.push(Entry {
                payload,
                at_ms,
                command: command.clone(),
                digest: self.ledger.digest(),
            });
        }
        outcome
    }

    fn place_without_credit_check(
        &mut self,
        at_ms: u64,
        command: &Command,
        dealer: &str,
        records: &mut Vec<Vec<u8>>,
    ) -> Outcome {
        let Ok(view) = self.ledger.dealer(dealer) else {
            return self.logged_apply(at_ms, command, records);
        };
        let mut spec = DealerSpec {
            code: view.code,
            name: view.name,
            tier: view.tier,
            region: view.region,
            credit_limit: allot_engine::limits::MONEY_MAX,
            approval_threshold: view.approval_threshold,
            rebate_rate_bp: view.rebate_rate_bp,
        };
        self.logged_apply(at_ms, &Command::PutDealer(spec.clone()), records);
        let outcome = self.logged_apply(at_ms, command, records);
        spec.credit_limit = view.credit_limit;
        self.logged_apply(at_ms, &Command::PutDealer(spec), records);
        outcome
    }

    /// Apply a batch and submit its records as one WAL submission; wait for the
    /// completion. Returns what each command did and whether the batch is durable
    /// (then every record in it is acknowledged).
    pub fn run_batch(&mut self, batch: Vec<(u64, Command)>) -> (Vec<Applied>, bool) {
        let mut records = Vec::new();
        let applied: Vec<Applied> = batch
            .into_iter()
            .map(|(advance, command)| self.apply_one(advance, command, &mut records))
            .collect();
        let durable = if self.log.len() == self.acked {
            true
        } else {
            self.submit_and_wait(records)
        };
        if durable {
            self.acked = self.log.len();
        }
        (applied, durable)
    }

    fn submit_and_wait(&mut self, records: Vec<Vec<u8>>) -> bool {
        let Some(wal) = &self.wal else { return false };
        let (tx, rx) = mpsc::sync_channel(1);
        let submitted = wal.submit(
            records,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        // A dropped callback (submit refused) closes the channel: not durable.
        submitted.is_ok() && matches!(rx.recv(), Ok(Ok(_)))
    }

    /// Write a snapshot of the ledger covering every record so far. `Ok(false)` when
    /// the WAL refused or failed it (an IO failure here does not poison the log).
    pub fn snapshot(&mut self) -> Result<bool, String> {
        let Some(wal) = &self.wal else {
            return Ok(false);
        };
        let covers = wal.last_seq();
        if self.bug == Bug::None && covers != self.log.len() as u64 {
            return Err(format!(
                "wal last_seq {covers} but the shard submitted {} records",
                self.log.len()
            ));
        }
        let blob = self.ledger.snapshot();
        // Recorded before the attempt: a write reported failed (say, the directory
        // fsync after the rename) may still leave the snapshot on disk.
        self.snapshot_digests.insert(covers, self.ledger.digest());
        match wal.write_snapshot(covers, &blob) {
            Ok(()) => Ok(true),
            Err(WalError::Poisoned(_) | WalError::Io { .. } | WalError::Closed) => Ok(false),
            Err(e) => Err(format!("snapshot failed: {e}")),
        }
    }

    pub fn poisoned(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.poisoned().is_some())
    }

    /// Stop the process: the WAL handle and its writer thread go away; nothing
    /// unacknowledged is waited for.
    pub fn stop(&mut self) {
        self.wal = None;
    }

    /// Stop cleanly: flush and close the WAL.
    pub fn close(&mut self) -> Result<(), String> {
        match self.wal.take() {
            Some(wal) => wal.close().map_err(|e| format!("close failed: {e}")),
            None => Ok(()),
        }
    }

    /// Open the storage, restore the newest snapshot and replay the records after
    /// it. `Err(Ok(io))` is an IO failure worth retrying (a crash or an injected
    /// fault hit recovery); `Err(Err(msg))` is a finding.
    pub fn try_recover(&mut self) -> Result<Recovered, Result<String, String>> {
        self.wal = None;
        let classify = |e: WalError| {
            if e.is_corruption() {
                Err(format!("recovery found damage: {e}"))
            } else {
                Ok(format!("recovery io: {e}"))
            }
        };
        let mut replay = open(self.storage(), self.config).map_err(classify)?;
        let (snapshot_seq, mut ledger) = match replay.snapshot() {
            Some((seq, blob)) => {
                let ledger = Ledger::restore(blob)
                    .map_err(|e| Err(format!("snapshot {seq} does not restore: {e}")))?;
                (seq, ledger)
            }
            None => (0, Ledger::default()),
        };
        if snapshot_seq > 0 {
            match self.snapshot_digests.get(&snapshot_seq) {
                Some(d) if *d == ledger.digest() => {}
                Some(_) => {
                    return Err(Err(format!(
                        "snapshot {snapshot_seq} holds a different book"
                    )))
                }
                None => return Err(Err(format!("snapshot {snapshot_seq} was never written"))),
            }
        }
        let mut records = 0;
        let mut events = Vec::new();
        let mut last_at = 0;
        while let Some(record) = replay.next_record().map_err(classify)? {
            let index = (record.seq - 1) as usize;
            let Some(entry) = self.log.get(index) else {
                return Err(Err(format!(
                    "recovered seq {} was never submitted",
                    record.seq
                )));
            };
            if entry.payload != record.payload {
                return Err(Err(format!(
                    "recovered seq {} differs from what was submitted (lost, reordered or corrupted)",
                    record.seq
                )));
            }
            let (tenant, at_ms, command) = decode_payload(&record.payload)
                .map_err(|e| Err(format!("seq {}: {e}", record.seq)))?;
            if tenant != TENANT {
                return Err(Err(format!("seq {}: tenant {tenant}", record.seq)));
            }
            events.clear();
            let outcome = ledger.apply(at_ms, &command, &mut events);
            if !outcome.changed {
                return Err(Err(format!("replayed seq {} changed nothing", record.seq)));
            }
            if ledger.digest() != entry.digest {
                return Err(Err(format!(
                    "replay of seq {} gives another book than the live run",
                    record.seq
                )));
            }
            last_at = at_ms;
            records += 1;
        }
        let last = replay.last_seq();
        let torn_bytes = replay.torn_tail_bytes();
        let wal = replay.finish().map_err(classify)?;
        if (last as usize) < self.acked {
            return Err(Err(format!(
                "acknowledged records lost: the log ends at seq {last}, {} were acknowledged",
                self.acked
            )));
        }
        if last == 0 && ledger.digest() != Ledger::default().digest() {
            return Err(Err("an empty log recovered a non-empty book".into()));
        }
        // Records past the acknowledged ones survived the crash: they are now durable
        // and part of history. Everything after them never happened.
        self.log.truncate(last as usize);
        self.snapshot_digests.retain(|&seq, _| seq <= last);
        self.acked = self.log.len();
        self.ledger = ledger;
        self.now_ms = self.now_ms.max(last_at);
        self.wal = Some(wal);
        Ok(Recovered {
            snapshot_seq,
            records,
            torn_bytes,
        })
    }

    /// Recover, retrying IO failures (a crash during recovery) a few times.
    pub fn recover(&mut self) -> Result<Recovered, String> {
        let mut last = String::new();
        for _ in 0..6 {
            match self.try_recover() {
                Ok(r) => return Ok(r),
                Err(Ok(io)) => {
                    last = io;
                    // Whatever fault hit recovery has fired; a second crash would
                    // restart from the same surviving state.
                    self.mem.set_faults(allot_wal::Faults::default());
                }
                Err(Err(finding)) => return Err(finding),
            }
        }
        Err(format!("recovery keeps failing: {last}"))
    }
}
