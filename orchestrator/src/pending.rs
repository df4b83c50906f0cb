//! [`Pending`]: what a change answers until it is durable. The engine's mutations return one;
//! the only way to the value inside is [`Pending::durable`], which waits for the flush of the
//! store that made the change, so no request can be answered before what it changed survives
//! a crash.

use crate::store::{self, Seq, Store};

/// A value whose change is written but maybe not yet flushed. Dropping it unread is a compile
/// warning (an error under `-D warnings`); reading it means waiting for the flush.
#[must_use = "nothing is acknowledged before it is durable: await `.durable()`"]
#[derive(Debug, Clone)]
pub struct Pending<T> {
    value: T,
    seq: Seq,
}

impl<T> Pending<T> {
    /// `value`, durable once the store's write `seq` is.
    pub(crate) fn new(value: T, seq: Seq) -> Pending<T> {
        Pending { value, seq }
    }

    /// `value`, answered by a request that wrote nothing new: durable once everything written
    /// before it is (what it answers may have been written by a request still waiting for its
    /// flush).
    pub(crate) fn unchanged(store: &Store, value: T) -> Pending<T> {
        Pending::new(value, store.last_write())
    }

    /// Waits until the write is durable, then gives the value.
    pub async fn durable(self) -> Result<T, store::Error> {
        self.seq.durable().await?;
        Ok(self.value)
    }

    /// The same write, with the value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Pending<U> {
        Pending {
            value: f(self.value),
            seq: self.seq,
        }
    }

    /// The same write, its values cut into consecutive parts of `counts` items: one answer
    /// for each request that shared the write.
    pub(crate) fn split<U>(self, counts: &[usize]) -> Vec<Pending<Vec<U>>>
    where
        T: IntoIterator<Item = U>,
    {
        let mut rest = self.value.into_iter();
        counts
            .iter()
            .map(|&n| Pending::new(rest.by_ref().take(n).collect(), self.seq.clone()))
            .collect()
    }

    /// The value, for code that reads what a change will be without answering anyone (the
    /// log line of a startup step, a test of the engine); the write is still flushed by the
    /// store's flusher.
    pub fn peek(&self) -> &T {
        &self.value
    }
}
