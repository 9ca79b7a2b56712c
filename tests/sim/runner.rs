//! One simulation run: a seed, a number of steps, optionally a planted bug. Each step
//! arms faults (maybe), draws a batch of commands, runs it through the shard, checks
//! every outcome against the model, moves the model forward only by what was
//! acknowledged, audits, and maybe snapshots or crashes. A run ends with a clean
//! restart and a replay of the whole log from scratch.

use std::fmt;

use allot_engine::{Command, Effect, Ledger, Rejection};
use allot_wal::{Faults, WalConfig};

use crate::audit::audit;
use crate::faults::{crash_mode, draw_faults, FaultRates};
use crate::model::Model;
use crate::rng::Rng;
use crate::shard::{Applied, Bug, SimShard};
use crate::workload::Workload;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub steps: u64,
    pub bug: Bug,
    pub rates: FaultRates,
}

impl SimConfig {
    pub fn new(seed: u64, steps: u64, bug: Bug) -> Self {
        Self {
            seed,
            steps,
            bug,
            rates: FaultRates::default(),
        }
    }
}

/// What a run did, for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub commands: u64,
    pub acked_records: u64,
    pub rejected: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub failed_batches: u64,
    pub snapshots: u64,
    pub recovered_unacked: u64,
    pub torn_bytes: u64,
    pub orders: u64,
    /// Closed orders that left the book (retention).
    pub pruned: u64,
    pub final_digest: [u8; 32],
}

/// A finding: the seed and the step, and what disagreed.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation failed: seed {} step {}: {}\n  replay: ALLOT_SIM_SEED={} \
             CARGO_TARGET_DIR=/work/target-sim cargo test -p allot-tests --test simulation \
             simulation_seeds",
            self.seed, self.step, self.message, self.seed
        )
    }
}

struct Run {
    config: SimConfig,
    step: u64,
    shard: SimShard,
    model: Model,
    workload: Workload,
    faults: Rng,
    audits: Rng,
    stats: Stats,
}

fn normalize(result: &Result<Effect, Rejection>) -> String {
    match result {
        // Messages are for humans; the field named is checked by the rules tests.
        Err(Rejection::Invalid { .. }) => "invalid_field".into(),
        Err(Rejection::Overflow { .. }) => "overflow".into(),
        other => format!("{other:?}"),
    }
}

pub fn run(config: &SimConfig) -> Result<Stats, Failure> {
    let mut rng = Rng::new(config.seed);
    let wal = WalConfig {
        segment_bytes_max: *rng.pick(&[2_048, 8_192, 1 << 20]),
        batch_bytes_max: *rng.pick(&[256, 4_096, 4 << 20]),
        snapshots_keep: rng.range(1, 3) as usize,
        // A third of the runs hold small batches back for gathering (taken from the
        // seed, so the random streams of the other choices stay as they were).
        commit_delay: if config.seed % 3 == 1 {
            std::time::Duration::from_micros(30)
        } else {
            std::time::Duration::ZERO
        },
        commit_delay_records: 2 + (config.seed % 5) as usize,
        ..WalConfig::default()
    };
    let now_ms = 1_700_000_000_000;
    let fail = |message: String| Failure {
        seed: config.seed,
        step: 0,
        message,
    };
    let shard = SimShard::new(wal, config.bug, now_ms).map_err(fail)?;
    let mut run = Run {
        config: config.clone(),
        step: 0,
        shard,
        model: Model::default(),
        workload: Workload::new(rng.fork()),
        faults: rng.fork(),
        audits: rng.fork(),
        stats: Stats::default(),
    };
    run.go().map_err(|message| Failure {
        seed: config.seed,
        step: run.step,
        message,
    })?;
    Ok(run.stats)
}

impl Run {
    fn go(&mut self) -> Result<(), String> {
        let setup = self.workload.setup(self.shard.now_ms);
        for chunk in setup.chunks(8) {
            self.execute(chunk.iter().map(|c| (0, c.clone())).collect())?;
        }
        self.audit()?;
        for step in 1..=self.config.steps {
            self.step = step;
            self.one_step()?;
        }
        self.step = self.config.steps + 1;
        self.finish()
    }

    fn one_step(&mut self) -> Result<(), String> {
        if let Some(faults) = draw_faults(&mut self.faults, &self.config.rates) {
            if crate::trace_on() {
                eprintln!(
                    "step {} arm {faults:?} files {:?}",
                    self.step,
                    self.shard.mem.files()
                );
            }
            self.shard.mem.set_faults(faults);
        }
        let size = self.faults.range(1, 4);
        let batch: Vec<(u64, Command)> = (0..size)
            .map(|_| self.workload.next(&self.model, self.shard.now_ms))
            .collect();
        self.execute(batch)?;
        self.audit()?;
        let rates = self.config.rates;
        if self.faults.chance(1, rates.snapshot) {
            if crate::trace_on() {
                eprintln!(
                    "step {} snapshot at {} files {:?}",
                    self.step,
                    self.shard.log.len(),
                    self.shard.mem.files()
                );
            }
            if self.shard.snapshot()? {
                self.stats.snapshots += 1;
            } else if self.shard.poisoned() {
                let crash = self.faults.chance(1, 2);
                self.restart(crash)?;
            }
        }
        if self.faults.chance(1, rates.crash_between_steps) {
            self.restart(true)?;
        } else if self.faults.chance(1, rates.crash_between_steps * 2) {
            self.shard.close()?;
            self.restart(false)?;
        }
        Ok(())
    }

    /// Run one batch through the shard; compare each outcome with the model's.
    fn execute(&mut self, batch: Vec<(u64, Command)>) -> Result<(), String> {
        let mut pending = self.model.clone();
        let (applied, durable) = self.shard.run_batch(batch);
        for Applied {
            at_ms,
            command,
            outcome,
            violation,
        } in &applied
        {
            let (expected, changed) = pending.apply(*at_ms, command);
            if normalize(&outcome.result) != normalize(&expected) || outcome.changed != changed {
                return Err(format!(
                    "outcome differs for {command:?} at {at_ms}\n  engine: {:?} changed={}\n  model:  {expected:?} changed={changed}",
                    outcome.result, outcome.changed
                ));
            }
            if let Some(violation) = violation {
                return Err(format!("after {command:?}: {violation}"));
            }
            self.stats.commands += 1;
            self.stats.rejected += u64::from(outcome.result.is_err());
        }
        if durable {
            self.model = pending;
            self.stats.acked_records = self.shard.acked as u64;
            Ok(())
        } else {
            self.stats.failed_batches += 1;
            let crash = self.faults.chance(1, 2);
            self.restart(crash)
        }
    }

    fn audit(&mut self) -> Result<(), String> {
        audit(
            &self.shard.ledger,
            &self.model,
            self.shard.now_ms,
            &mut self.audits,
        )
    }

    /// Stop the shard (crashing the machine or not) and recover it; the model then
    /// takes in the records that survived beyond the acknowledged ones.
    fn restart(&mut self, crash: bool) -> Result<(), String> {
        self.shard.stop();
        if crash {
            let mode = crash_mode(&mut self.faults);
            if crate::trace_on() {
                eprintln!(
                    "step {} crash {mode:?} files {:?}",
                    self.step,
                    self.shard.mem.files()
                );
            }
            self.shard.mem.crash(mode);
            self.stats.crashes += 1;
        }
        let mut faults = Faults::default();
        if self.faults.chance(1, self.config.rates.crash_in_recovery) {
            faults.crash_after_op = Some((self.faults.range(1, 4), crash_mode(&mut self.faults)));
        }
        self.shard.mem.set_faults(faults);
        let acked = self.shard.acked;
        let recovered = self.shard.recover()?;
        if crate::trace_on() {
            eprintln!(
                "step {} restart crash={crash} acked_before={acked} log={} snap={} records={}",
                self.step,
                self.shard.log.len(),
                recovered.snapshot_seq,
                recovered.records
            );
        }
        self.shard.mem.set_faults(Faults::default());
        self.stats.restarts += 1;
        self.stats.torn_bytes += recovered.torn_bytes;
        for entry in &self.shard.log[acked..] {
            let _ = self.model.apply(entry.at_ms, &entry.command);
            self.stats.recovered_unacked += 1;
        }
        self.stats.acked_records = self.shard.acked as u64;
        self.audit().map_err(|e| {
            format!(
                "after recovery (snapshot {}, {} records): {e}",
                recovered.snapshot_seq, recovered.records
            )
        })
    }

    /// A clean shutdown and restart, then the whole log replayed from scratch must
    /// give the same book.
    fn finish(&mut self) -> Result<(), String> {
        self.shard.mem.set_faults(Faults::default());
        self.shard.close()?;
        self.restart(false)?;
        let mut ledger = Ledger::default();
        let mut events = Vec::new();
        for entry in &self.shard.log {
            let _ = ledger.apply(entry.at_ms, &entry.command, &mut events);
            events.clear();
        }
        if ledger.digest() != self.shard.ledger.digest() {
            return Err("replaying the whole log from scratch gives another book".into());
        }
        self.stats.steps = self.config.steps;
        self.stats.orders = self.model.order_count();
        self.stats.pruned = self.model.pruned_count();
        self.stats.final_digest = self.shard.ledger.digest();
        Ok(())
    }
}
