//! A unit's outbox: what a hardware model sends that is not a write to its own memory
//! (interrupt messages, messages to devices), held until the embedder delivers it.
//!
//! It is bounded as the hardware's ports are. Interrupt messages coalesce: at most one is
//! pending per interrupt source, and a repeat while it is pending is counted, not queued (an
//! interrupt says "look", and one look sees everything). Device messages (invalidations, page
//! responses) are never dropped, since the unit counts one as done once it is sent: when
//! `capacity` of them are pending the outbox refuses the next one, and the producer waits, as a
//! queue waits for a slow device, until the embedder drains. So the outbox holds at most
//! `capacity` device messages and one interrupt per source.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What an outbox has done since reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Device messages queued.
    pub messages: u64,
    /// Interrupt messages queued.
    pub interrupts: u64,
    /// Interrupt messages not queued because one from the same source was pending.
    pub interrupts_coalesced: u64,
    /// Device messages refused because the outbox was full: each time a producer had to wait.
    pub full: u64,
    /// The most device messages pending at once.
    pub max_messages: u64,
}

/// The pending outputs, oldest first.
#[derive(Debug)]
struct Pending<T, S> {
    items: VecDeque<T>,
    /// Device messages among `items`.
    messages: usize,
    /// Room promised to [`Reservation`]s not yet used.
    reserved: usize,
    /// The interrupt sources with a message among `items`.
    interrupts: Vec<S>,
    /// A producer was refused and waits for a drain.
    waiting: bool,
    stats: OutboxStats,
}

impl<T, S> Pending<T, S> {
    fn push_message(&mut self, item: T) {
        self.messages += 1;
        self.items.push_back(item);
        self.stats.messages += 1;
        let n = u64::try_from(self.messages).unwrap_or(u64::MAX);
        self.stats.max_messages = self.stats.max_messages.max(n);
    }
}

/// Room for one device message in an [`Outbox`] ([`Outbox::reserve`]); dropping it unused
/// gives the room back.
#[derive(Debug)]
pub struct Reservation<'a, T, S> {
    outbox: &'a Outbox<T, S>,
    used: bool,
}

impl<T, S> Reservation<'_, T, S> {
    /// Sends `item` in the reserved room.
    pub fn send(mut self, item: T) {
        let mut p = self.outbox.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.reserved = p.reserved.saturating_sub(1);
        p.push_message(item);
        self.used = true;
    }
}

impl<T, S> Drop for Reservation<'_, T, S> {
    fn drop(&mut self) {
        if !self.used {
            let mut p = self.outbox.pending.lock().unwrap_or_else(PoisonError::into_inner);
            p.reserved = p.reserved.saturating_sub(1);
        }
    }
}

/// Outputs of type `T` whose interrupt messages come from sources `S`.
#[derive(Debug)]
pub struct Outbox<T, S> {
    capacity: usize,
    pending: Mutex<Pending<T, S>>,
}

impl<T, S: Copy + Eq> Outbox<T, S> {
    /// An empty outbox that holds up to `capacity` device messages (at least one).
    pub fn new(capacity: usize) -> Self {
        let pending = Pending {
            items: VecDeque::new(),
            messages: 0,
            reserved: 0,
            interrupts: Vec::new(),
            waiting: false,
            stats: OutboxStats::default(),
        };
        Self { capacity: capacity.max(1), pending: Mutex::new(pending) }
    }

    fn lock(&self) -> MutexGuard<'_, Pending<T, S>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many device messages it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An interrupt message from `source`: queued, unless one from `source` is pending, in
    /// which case it is counted and dropped (the pending one stands for both).
    pub fn interrupt(&self, source: S, item: T) {
        let mut p = self.lock();
        if p.interrupts.contains(&source) {
            p.stats.interrupts_coalesced += 1;
            return;
        }
        p.interrupts.push(source);
        p.items.push_back(item);
        p.stats.interrupts += 1;
    }

    /// How many more device messages fit now.
    pub fn room(&self) -> usize {
        let p = self.lock();
        self.capacity.saturating_sub(p.messages + p.reserved)
    }

    /// A device message: queued if there is room, else handed back, and the producer is
    /// noted as waiting for the next [`drain`](Self::drain).
    pub fn message(&self, item: T) -> Result<(), T> {
        let mut p = self.lock();
        if p.messages + p.reserved >= self.capacity {
            p.waiting = true;
            p.stats.full += 1;
            return Err(item);
        }
        p.push_message(item);
        Ok(())
    }

    /// Room for one device message, kept until the reservation sends it or is dropped: for a
    /// producer that must know there is room before it acts. `None` if the outbox is full
    /// (counted in [`OutboxStats::full`]; nobody waits for a drain).
    pub fn reserve(&self) -> Option<Reservation<'_, T, S>> {
        let mut p = self.lock();
        if p.messages + p.reserved >= self.capacity {
            p.stats.full += 1;
            return None;
        }
        p.reserved += 1;
        Some(Reservation { outbox: self, used: false })
    }

    /// Notes a producer that found too little [`room`](Self::room) and waits for a drain.
    pub fn wait(&self) {
        let mut p = self.lock();
        p.waiting = true;
        p.stats.full += 1;
    }

    /// Takes everything pending, oldest first, and whether a producer was waiting for room.
    pub fn drain(&self) -> (Vec<T>, bool) {
        let mut p = self.lock();
        p.messages = 0;
        p.interrupts.clear();
        let waiting = std::mem::take(&mut p.waiting);
        (p.items.drain(..).collect(), waiting)
    }

    /// What it has done so far.
    pub fn stats(&self) -> OutboxStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_coalesce_and_messages_wait_for_room() {
        let o: Outbox<u32, char> = Outbox::new(2);
        o.interrupt('a', 1);
        o.interrupt('a', 2);
        assert_eq!(o.message(10), Ok(()));
        o.interrupt('b', 3);
        assert_eq!(o.message(11), Ok(()));
        assert_eq!((o.room(), o.message(12)), (0, Err(12)));
        o.interrupt('a', 4);
        let s = o.stats();
        assert_eq!((s.messages, s.interrupts, s.interrupts_coalesced, s.full), (2, 2, 2, 1));
        assert_eq!(o.drain(), (vec![1, 10, 3, 11], true));
        assert_eq!(o.drain(), (vec![], false));
        o.interrupt('a', 5);
        assert_eq!((o.room(), o.drain()), (2, (vec![5], false)));
        // A reservation holds its room across a drain until it is used or dropped.
        let r = o.reserve().unwrap();
        let unused = o.reserve().unwrap();
        assert!(o.reserve().is_none());
        assert_eq!((o.drain(), o.room()), ((vec![], false), 0));
        drop(unused);
        r.send(20);
        assert_eq!((o.room(), o.drain()), (1, (vec![20], false)));
    }
}
