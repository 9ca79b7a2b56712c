//! Credit: payments. (Holding, using and releasing credit happen with the order
//! lifecycle, in `placement` and `order`.)

use crate::catalog::check_money;
use crate::error::Rejection;
use crate::event::{Event, EventKind};
use crate::ledger::{Effect, Ledger};

impl Ledger {
    /// `credit_used -= amount`; a payment above `credit_used` is refused.
    pub(crate) fn record_payment(
        &mut self,
        dealer: &str,
        amount: i64,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Rejection> {
        let id = *self
            .index
            .dealers
            .get(dealer)
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: dealer.to_owned(),
            })?;
        check_money("amount", amount)?;
        if amount == 0 {
            return Err(Rejection::invalid("amount", "must be positive"));
        }
        let account = &mut self.state.dealers[id.index()];
        if amount > account.credit_used {
            return Err(Rejection::Overpayment {
                amount,
                credit_used: account.credit_used,
            });
        }
        account.credit_used -= amount;
        let credit_used = account.credit_used;
        self.emit(
            now_ms,
            EventKind::PaymentRecorded {
                dealer: id,
                amount,
                credit_used,
            },
            events,
        );
        Ok(Effect::Applied)
    }
}
