//! The invalidation sanitizer (issue 14): under [`Profile::Strict`](crate::Profile), a cache
//! keeps, per entry, the table and structure words the entry was built from, and a hit
//! re-reads them. A word that no longer holds what it held (apart from the bits the hardware
//! itself writes, A/D or AF) means the driver changed something the entry depends on and the
//! unit still answers from the old entry: the invalidation the spec requires is missing, or it
//! was issued and not yet synchronised. That is a [`Violation`], queued for the embedder.
//!
//! The sanitizer learns of changes only by re-reading what it recorded, never from the
//! driver, so it works with any driver, a guest's included. Its re-reads are counted apart
//! ([`SanitizerStats::reads`]), never as the translation's table reads.
//!
//! Nothing here runs under [`Profile::Forgiving`](crate::Profile): a model that is not strict
//! builds no [`Provenances`], no [`Recorder`], and its hit path is the cache's.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use sviommu_pgtable::{Stage, WalkObserver, WalkStep};

/// Where a recorded word came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Word `index` of a configuration structure the model read (its name as the model gave
    /// it to the observer: "context entry", "STE", ...).
    Structure {
        /// The structure's name.
        what: &'static str,
        /// Which of its 64-bit words.
        index: u8,
    },
    /// A page-table entry of `stage` at spec level `level`.
    Table {
        /// The stage of the table.
        stage: Stage,
        /// The spec level number.
        level: i8,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Structure { what, index } => write!(f, "{what} word {index}"),
            Self::Table { stage: Stage::S1, level } => write!(f, "stage-1 level-{level} entry"),
            Self::Table { stage: Stage::S2, level } => write!(f, "stage-2 level-{level} entry"),
        }
    }
}

/// One 64-bit word an entry was built from: where it is in memory and what it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Word {
    /// Its physical address.
    pub addr: u64,
    /// Its value when the entry was built.
    pub value: u64,
    /// What it is.
    pub origin: Origin,
}

/// A violation: a cache answered from an entry built from a word that has changed since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation<C> {
    /// The cache ("IOTLB", "context cache", "STE cache", ...).
    pub cache: &'static str,
    /// The entry, as its key reads.
    pub entry: String,
    /// The word as the entry was built from it.
    pub word: Word,
    /// What the word holds now.
    pub now: u64,
    /// The command the spec requires after this change, which would have removed the entry.
    pub missing: C,
    /// The command was issued and selects the entry, but the synchronisation after it (an
    /// invalidation wait descriptor, CMD_SYNC) has not completed: that is what is missing.
    pub unsynced: bool,
}

/// How a model names the synchronisation it is missing in a [`Violation`]'s display.
pub trait Command: fmt::Display {
    /// The synchronisation command ("invalidation wait descriptor", "CMD_SYNC").
    fn sync_name(&self) -> &'static str;
}

impl<C: Command> fmt::Display for Violation<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entry {} used after its {} at {:#x} changed {:#018x} -> {:#018x}: ",
            self.cache, self.entry, self.word.origin, self.word.addr, self.word.value, self.now
        )?;
        if self.unsynced {
            write!(f, "missing {} after {}", self.missing.sync_name(), self.missing)
        } else {
            write!(f, "missing {}", self.missing)
        }
    }
}

/// What a sanitizer has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SanitizerStats {
    /// Violations found.
    pub violations: u64,
    /// Of those, dropped because the queue was full (counted, never lost silently).
    pub dropped: u64,
    /// Words re-read to check cache hits (not the translations' table reads).
    pub reads: u64,
}

/// IMPDEF: violations the queue holds until the embedder drains it.
pub const VIOLATION_QUEUE: usize = 256;

/// The violations a unit found and the embedder has not read, bounded, with counters.
pub struct ViolationLog<C> {
    queue: Mutex<VecDeque<Violation<C>>>,
    found: AtomicU64,
    dropped: AtomicU64,
    reads: AtomicU64,
}

impl<C> fmt::Debug for ViolationLog<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViolationLog").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl<C> Default for ViolationLog<C> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            found: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }
}

impl<C> ViolationLog<C> {
    /// Queues `v`, or counts it dropped when [`VIOLATION_QUEUE`] are waiting.
    pub fn push(&self, v: Violation<C>) {
        self.found.fetch_add(1, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= VIOLATION_QUEUE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(v);
        }
    }

    /// Every queued violation, oldest first; the queue is empty afterwards.
    pub fn drain(&self) -> Vec<Violation<C>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect()
    }

    /// Counts `n` words re-read.
    pub fn count_reads(&self, n: u64) {
        self.reads.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn stats(&self) -> SanitizerStats {
        SanitizerStats {
            violations: self.found.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
        }
    }
}

/// A recorded entry's words, and what has happened to it.
#[derive(Debug)]
struct Prov {
    words: Box<[Word]>,
    /// An invalidation that selects the entry was issued and has not taken effect.
    pending: bool,
    /// A violation was reported for it (once per entry).
    reported: bool,
}

/// A changed word a hit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The word as recorded.
    pub word: Word,
    /// What it holds now.
    pub now: u64,
    /// An invalidation selecting the entry is waiting for its synchronisation.
    pub pending: bool,
}

/// The words each live entry of one cache was built from, keyed as the cache is.
#[derive(Debug)]
pub struct Provenances<K> {
    map: Mutex<HashMap<K, Prov>>,
}

impl<K> Default for Provenances<K> {
    fn default() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }
}

impl<K: Copy + Eq + Hash> Provenances<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Prov>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `key`'s entry was (re)built from `words`.
    pub fn record(&self, key: K, words: Vec<Word>) {
        let prov = Prov { words: words.into_boxed_slice(), pending: false, reported: false };
        self.lock().insert(key, prov);
    }

    /// These entries left the cache.
    pub fn forget(&self, keys: impl IntoIterator<Item = K>) {
        let mut map = self.lock();
        for k in keys {
            map.remove(&k);
        }
    }

    /// An issued invalidation selects these entries (they go at its synchronisation).
    pub fn mark_pending(&self, keys: impl IntoIterator<Item = K>) {
        let mut map = self.lock();
        for k in keys {
            if let Some(p) = map.get_mut(&k) {
                p.pending = true;
            }
        }
    }

    /// Re-reads `key`'s words with `read` (`None`: no longer readable, compared as changed)
    /// and returns the first that changed other than as `hw_wrote` allows, unless one was
    /// reported for this entry already. Returns the number of words read too.
    pub fn check(
        &self,
        key: &K,
        read: impl Fn(u64) -> Option<u64>,
        hw_wrote: impl Fn(&Word, u64) -> bool,
    ) -> (Option<Stale>, u64) {
        let mut map = self.lock();
        let Some(p) = map.get_mut(key) else { return (None, 0) };
        if p.reported {
            return (None, 0);
        }
        let mut reads = 0;
        for w in p.words.iter() {
            reads += 1;
            let now = read(w.addr);
            if now == Some(w.value) {
                continue;
            }
            let now = now.unwrap_or(!w.value);
            if hw_wrote(w, now) {
                continue;
            }
            p.reported = true;
            return (Some(Stale { word: *w, now, pending: p.pending }), reads);
        }
        (None, reads)
    }

    /// The words `key`'s entry was built from.
    pub fn words(&self, key: &K) -> Option<Vec<Word>> {
        self.lock().get(key).map(|p| p.words.to_vec())
    }

    /// Entries recorded now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    static MARKING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with invalidations marking what they select instead of removing it: a strict
/// model runs each invalidation it holds for its synchronisation once this way when it is
/// issued, so a hit on an entry it selects can name the missing synchronisation. Per thread,
/// so a translation applying a held invalidation meanwhile on another thread removes as usual.
pub fn marking(f: impl FnOnce()) {
    MARKING.with(|m| m.set(true));
    f();
    MARKING.with(|m| m.set(false));
}

/// Whether this thread is inside [`marking`].
pub fn is_marking() -> bool {
    MARKING.with(Cell::get)
}

/// What one strict translation read, as it read it: the configuration structures' words and
/// the table entries. A model hands out the words a cache entry depends on when it inserts it.
#[derive(Debug, Default)]
pub struct Recorder {
    structures: RefCell<Vec<Word>>,
    steps: RefCell<Vec<Word>>,
    /// Words of cached entries a walk used instead of reading (a walk cache's resume point, a
    /// stage-2 leaf): the translation depends on them too.
    borrowed: RefCell<Vec<Word>>,
    /// Per stage (stage 1, stage 2): where in `steps` the stage's current walk began, and the
    /// words of the walk-cache entry it resumed from.
    walks: [(Cell<usize>, RefCell<Vec<Word>>); 2],
}

fn stage_index(stage: Stage) -> usize {
    match stage {
        Stage::S1 => 0,
        Stage::S2 => 1,
    }
}

impl Recorder {
    /// The structure words read since the last call (the structures one cache entry is built
    /// from, read in order: a context entry's root and context entry, ...).
    pub fn take_structures(&self) -> Vec<Word> {
        std::mem::take(&mut *self.structures.borrow_mut())
    }

    /// Forgets the table entries read so far (a structure fetch that went through stage 2
    /// belongs to that structure, not to the walk that follows).
    pub fn clear_steps(&self) {
        self.steps.borrow_mut().clear();
        self.borrowed.borrow_mut().clear();
    }

    /// Every table entry the translation read or borrowed so far: what a TLB entry depends on.
    pub fn steps(&self) -> Vec<Word> {
        let mut all = self.steps.borrow().clone();
        all.extend(self.borrowed.borrow().iter().copied());
        all
    }

    /// A walk of `stage` begins (a nested walk runs one stage-2 walk per stage-1 table).
    pub fn begin_walk(&self, stage: Stage) {
        if let Some((start, resumed)) = self.walks.get(stage_index(stage)) {
            start.set(self.steps.borrow().len());
            resumed.borrow_mut().clear();
        }
    }

    /// The current walk of `stage` resumed from a walk-cache entry built from `words`.
    pub fn resumed(&self, stage: Stage, words: &[Word]) {
        if let Some((_, resumed)) = self.walks.get(stage_index(stage)) {
            resumed.borrow_mut().extend_from_slice(words);
        }
        self.used(words);
    }

    /// The translation used a cached entry built from `words` (a stage-2 leaf).
    pub fn used(&self, words: &[Word]) {
        self.borrowed.borrow_mut().extend_from_slice(words);
    }

    /// What the current walk of `stage` depends on so far: the walk-cache entry it resumed
    /// from and the entries of that stage it read (a walk-cache or leaf-cache entry's words).
    pub fn walk_words(&self, stage: Stage) -> Vec<Word> {
        let Some((start, resumed)) = self.walks.get(stage_index(stage)) else { return Vec::new() };
        let mut all = resumed.borrow().clone();
        let steps = self.steps.borrow();
        let own = |w: &&Word| matches!(w.origin, Origin::Table { stage: s, .. } if s == stage);
        all.extend(steps.get(start.get()..).unwrap_or_default().iter().filter(own).copied());
        all
    }
}

/// An observer that records into a [`Recorder`] what it passes on to `inner`.
#[derive(Debug)]
pub struct Tee<'r, O> {
    /// The translation's own observer.
    pub inner: O,
    /// Where the words go.
    pub rec: &'r Recorder,
}

impl<O: WalkObserver> WalkObserver for Tee<'_, O> {
    fn step(&mut self, step: WalkStep) {
        self.rec.steps.borrow_mut().push(Word {
            addr: step.mem_addr,
            value: step.raw,
            origin: Origin::Table { stage: step.stage, level: step.level },
        });
        self.inner.step(step);
    }

    fn structure(&mut self, what: &'static str, mem_addr: u64, words: &[u64]) {
        let mut s = self.rec.structures.borrow_mut();
        for (i, (&value, addr)) in words.iter().zip((mem_addr..).step_by(8)).enumerate() {
            let index = u8::try_from(i).unwrap_or(u8::MAX);
            s.push(Word { addr, value, origin: Origin::Structure { what, index } });
        }
        drop(s);
        self.inner.structure(what, mem_addr, words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(addr: u64, value: u64) -> Word {
        Word { addr, value, origin: Origin::Table { stage: Stage::S1, level: 1 } }
    }

    #[test]
    fn a_changed_word_is_reported_once_and_hardware_bits_never() {
        let p: Provenances<u32> = Provenances::default();
        p.record(1, vec![word(0x1000, 0x5003), word(0x2000, 0x7003)]);
        let mem = |a: u64| Some(if a == 0x1000 { 0x5003 | 0x20 } else { 0x7003 });
        // Only A (bit 5) changed, which the hardware writes.
        let (stale, reads) = p.check(&1, mem, |w, now| (w.value ^ now) & !0x60 == 0);
        assert_eq!((stale, reads), (None, 2));
        let mem = |a: u64| Some(if a == 0x2000 { 0 } else { 0x5003 });
        let (stale, _) = p.check(&1, mem, |_, _| false);
        let stale = stale.expect("the cleared word");
        assert_eq!((stale.word.addr, stale.now, stale.pending), (0x2000, 0, false));
        assert_eq!(p.check(&1, mem, |_, _| false), (None, 0), "reported once");
        p.forget([1]);
        assert!(p.is_empty());
    }

    #[test]
    fn pending_marks_and_the_log_is_bounded() {
        let p: Provenances<u32> = Provenances::default();
        p.record(2, vec![word(0x10, 1)]);
        p.mark_pending([2, 3]);
        let (stale, _) = p.check(&2, |_| None, |_, _| false);
        assert!(stale.is_some_and(|s| s.pending && s.now == !1));
        let log: ViolationLog<&'static str> = ViolationLog::default();
        for _ in 0..VIOLATION_QUEUE + 3 {
            log.push(Violation {
                cache: "c",
                entry: String::new(),
                word: word(0, 0),
                now: 1,
                missing: "x",
                unsynced: false,
            });
        }
        let s = log.stats();
        assert_eq!((s.violations, s.dropped), (VIOLATION_QUEUE as u64 + 3, 3));
        assert_eq!(log.drain().len(), VIOLATION_QUEUE);
        assert!(log.drain().is_empty());
    }

    #[test]
    fn marking_is_per_thread() {
        marking(|| {
            assert!(is_marking());
            std::thread::scope(|s| {
                s.spawn(|| assert!(!is_marking()));
            });
        });
        assert!(!is_marking());
    }
}
