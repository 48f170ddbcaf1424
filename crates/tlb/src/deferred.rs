//! Behaviour profiles and invalidations that take effect at their synchronisation.
//!
//! Both IOMMU specs let an invalidation take effect at any point between the moment the unit
//! reads it and the moment the synchronisation after it completes (VT-d §6.5.2.8: an
//! invalidation wait descriptor completes once every descriptor before it has; SMMUv3 §3.21,
//! §4.7.3: CMD_SYNC completes once every command before it has). Under [`Profile::Strict`] a
//! model hands each invalidation to a [`Deferred`] instead of running it: the cached entries
//! it would remove stay in use until [`Deferred::sync`] (or, with [`Apply::Seeded`], until
//! a [`Deferred::tick`] the generator picks), so a driver that forgets the synchronisation
//! reads a stale translation, as it would on some implementation.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How strictly a hardware model holds its driver to the spec's invalidation rules. Both models
/// take it in their parameters (`VtdParams::profile`, `SmmuParams::profile`), so a scenario, a
/// test or an embedder chooses once for either architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// What silicon commonly does, and what drivers are usually tested against: an
    /// invalidation takes effect as soon as the unit reads it, and may remove more than it
    /// selects.
    #[default]
    Forgiving,
    /// The least the spec guarantees: a cached entry lives until the synchronisation that
    /// follows its invalidation (CMD_SYNC, an invalidation wait descriptor) completes, an
    /// invalidation removes only what its fields select, and caches keep everything the spec
    /// lets them keep. A driver that relies on more is caught here.
    Strict(Apply),
}

impl Profile {
    /// Strict, applying each invalidation at its synchronisation.
    pub const STRICT: Self = Self::Strict(Apply::AtSync);

    /// Whether this is [`Profile::Strict`].
    #[must_use]
    pub const fn is_strict(self) -> bool {
        matches!(self, Self::Strict(_))
    }
}

/// When, under [`Profile::Strict`], an invalidation takes effect: at the latest when the next
/// synchronisation completes, and never after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Apply {
    /// Exactly when the synchronisation completes (the latest moment the spec allows).
    #[default]
    AtSync,
    /// At a point between the command and its synchronisation, drawn from a generator seeded
    /// with this value at the points the model passes through anyway (each translation, each
    /// queue entry), so a failing run can be repeated with the same seed and call sequence.
    Seeded(u64),
}

/// A profile name that [`Profile::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadProfile(pub String);

impl fmt::Display for BadProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown profile {:?}: expected forgiving, strict or strict:SEED", self.0)
    }
}

impl std::error::Error for BadProfile {}

impl FromStr for Profile {
    type Err = BadProfile;

    /// `forgiving`, `strict`, or `strict:SEED` (a decimal seed: [`Apply::Seeded`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadProfile(s.to_owned());
        match s.trim() {
            "forgiving" => Ok(Self::Forgiving),
            "strict" => Ok(Self::STRICT),
            t => {
                let seed = t.strip_prefix("strict:").ok_or_else(bad)?;
                seed.parse().map(|n| Self::Strict(Apply::Seeded(n))).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forgiving => f.write_str("forgiving"),
            Self::Strict(Apply::AtSync) => f.write_str("strict"),
            Self::Strict(Apply::Seeded(n)) => write!(f, "strict:{n}"),
        }
    }
}

/// An invalidation waiting for its synchronisation: what it does to the caches `C`.
type Op<C> = Box<dyn FnOnce(&C) + Send + Sync>;

struct Queue<C> {
    ops: VecDeque<Op<C>>,
    /// xorshift64* state (never 0).
    rng: u64,
}

/// What a [`Deferred`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeferredStats {
    /// Invalidations held for a later synchronisation.
    pub deferred: u64,
    /// Of those, applied when a synchronisation completed.
    pub applied_at_sync: u64,
    /// Of those, applied earlier at a point the seeded generator chose.
    pub applied_early: u64,
    /// Held now.
    pub pending: u64,
}

/// The invalidations a model has read and not yet applied, under its [`Profile`].
///
/// Under [`Profile::Forgiving`] [`issue`](Self::issue) runs the invalidation at once and
/// nothing is ever held. Under [`Profile::Strict`] it is held until [`sync`](Self::sync);
/// with [`Apply::Seeded`], [`tick`](Self::tick) may apply one earlier. The hit path pays one
/// relaxed load of a flag in `tick` while nothing is held.
pub struct Deferred<C> {
    profile: Profile,
    any: AtomicBool,
    queue: Mutex<Queue<C>>,
    deferred: AtomicU64,
    at_sync: AtomicU64,
    early: AtomicU64,
}

impl<C> fmt::Debug for Deferred<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("profile", &self.profile)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<C> Deferred<C> {
    /// Nothing held, under `profile`.
    pub fn new(profile: Profile) -> Self {
        let seed = match profile {
            Profile::Strict(Apply::Seeded(s)) => s,
            _ => 0,
        };
        Self {
            profile,
            any: AtomicBool::new(false),
            // splitmix64's constant keeps a seed of 0 from being the stuck state.
            queue: Mutex::new(Queue { ops: VecDeque::new(), rng: seed ^ 0x9e37_79b9_7f4a_7c15 }),
            deferred: AtomicU64::new(0),
            at_sync: AtomicU64::new(0),
            early: AtomicU64::new(0),
        }
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<C>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An invalidation the unit has read: run at once (forgiving) or held until the next
    /// [`sync`](Self::sync) (strict).
    pub fn issue(&self, caches: &C, op: impl FnOnce(&C) + Send + Sync + 'static) {
        if !self.profile.is_strict() {
            op(caches);
            return;
        }
        let mut q = self.lock();
        q.ops.push_back(Box::new(op));
        self.deferred.fetch_add(1, Ordering::Relaxed);
        self.any.store(true, Ordering::Release);
    }

    /// A synchronisation completes: every held invalidation takes effect, in the order issued,
    /// before this returns. The lock is held while they run, so a concurrent
    /// [`tick`](Self::tick) cannot have taken one out and not yet applied it.
    pub fn sync(&self, caches: &C) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut q = self.lock();
        while let Some(op) = q.ops.pop_front() {
            op(caches);
            self.at_sync.fetch_add(1, Ordering::Relaxed);
        }
        self.any.store(false, Ordering::Release);
    }

    /// A point the model passes through (a translation, a queue entry): under
    /// [`Apply::Seeded`], one held invalidation, chosen by the generator, may take effect now.
    #[inline]
    pub fn tick(&self, caches: &C) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        if let Profile::Strict(Apply::Seeded(_)) = self.profile {
            self.tick_seeded(caches);
        }
    }

    #[cold]
    fn tick_seeded(&self, caches: &C) {
        let mut q = self.lock();
        let r = next(&mut q.rng);
        // One chance in four at each point to apply one of the held invalidations.
        if r & 3 != 0 || q.ops.is_empty() {
            return;
        }
        let len = u64::try_from(q.ops.len()).unwrap_or(u64::MAX);
        let i = usize::try_from((r >> 2) % len).unwrap_or(0);
        if let Some(op) = q.ops.remove(i) {
            op(caches);
            self.early.fetch_add(1, Ordering::Relaxed);
        }
        if q.ops.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> DeferredStats {
        let deferred = self.deferred.load(Ordering::Relaxed);
        let at_sync = self.at_sync.load(Ordering::Relaxed);
        let early = self.early.load(Ordering::Relaxed);
        DeferredStats {
            deferred,
            applied_at_sync: at_sync,
            applied_early: early,
            pending: deferred.saturating_sub(at_sync).saturating_sub(early),
        }
    }
}

/// How the devices behind a unit answer its ATS Invalidate Requests (VT-d device-TLB
/// invalidation descriptors, §6.5.2.5 / §6.5.2.6; SMMUv3 CMD_ATC_INV, §4.5.1), in ticks of the
/// unit's clock (see [`AtsTracker`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AtsCompletion {
    /// The completion arrives as the request is sent (what the models always did, and the
    /// default): a wait descriptor or CMD_SYNC behind it never waits for a device.
    #[default]
    Immediate,
    /// Each completion arrives this many ticks after its request was sent (at or beyond the
    /// unit's time-out, the request times out first).
    After(u32),
    /// No completion ever arrives, unless the embedder plays the device and sends one: every
    /// request times out.
    Never,
}

/// A unit's ATS invalidation behaviour: how its devices answer, and how long it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AtsPolicy {
    /// How the devices answer.
    pub completion: AtsCompletion,
    /// Ticks the unit waits for a completion before it reports a time-out (VT-d ITE, SMMUv3
    /// CERROR_ATC_INV_SYNC). At least 1.
    pub timeout_ticks: u32,
}

/// IMPDEF: the time-out of the default policy, in ticks.
pub const DEFAULT_ATS_TIMEOUT_TICKS: u32 = 64;

impl Default for AtsPolicy {
    fn default() -> Self {
        Self { completion: AtsCompletion::Immediate, timeout_ticks: DEFAULT_ATS_TIMEOUT_TICKS }
    }
}

/// An ATS completion policy that [`AtsCompletion::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAtsCompletion(pub String);

impl fmt::Display for BadAtsCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown ATS completion {:?}: expected immediate, after:TICKS or never", self.0)
    }
}

impl std::error::Error for BadAtsCompletion {}

impl FromStr for AtsCompletion {
    type Err = BadAtsCompletion;

    /// `immediate`, `after:TICKS` (decimal) or `never`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadAtsCompletion(s.to_owned());
        match s.trim() {
            "immediate" => Ok(Self::Immediate),
            "never" => Ok(Self::Never),
            t => {
                let n = t.strip_prefix("after:").ok_or_else(bad)?;
                n.parse().map(Self::After).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for AtsCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Immediate => f.write_str("immediate"),
            Self::After(n) => write!(f, "after:{n}"),
            Self::Never => f.write_str("never"),
        }
    }
}

/// One ATS Invalidate Request the unit waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    /// The device (requester ID / StreamID).
    sid: u32,
    /// When its completion arrives by itself, if ever.
    due: Option<u64>,
    /// When the unit stops waiting for it.
    deadline: u64,
}

/// What an [`AtsTracker`] has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtsTrackerStats {
    /// Requests the unit waited for (none under [`AtsCompletion::Immediate`]).
    pub waited: u64,
    /// Completions that arrived (by themselves or from the embedder) for a request waited for.
    pub completed: u64,
    /// Time-outs reported (each one counted once, when the unit's timer expired).
    pub timed_out: u64,
    /// Completions that matched no request the unit waited for.
    pub unexpected: u64,
    /// Waiting now.
    pub outstanding: u64,
}

/// The ATS Invalidate Requests a unit has sent and not seen completed, and the unit's clock.
///
/// The models have no clock of their own: time passes in ticks, one at each [`tick`](Self::tick)
/// the model makes (each register read software makes, and each tick the embedder asks for),
/// so a run repeats exactly. Not locked: the model keeps it under its register lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtsTracker {
    policy: AtsPolicy,
    now: u64,
    outstanding: VecDeque<Outstanding>,
    stats: AtsTrackerStats,
}

impl AtsTracker {
    /// Nothing outstanding, at tick 0.
    #[must_use]
    pub fn new(policy: AtsPolicy) -> Self {
        Self { policy, ..Self::default() }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> AtsPolicy {
        self.policy
    }

    /// The unit sent an ATS Invalidate Request to `sid`: waited for unless completions are
    /// immediate.
    pub fn sent(&mut self, sid: u32) {
        let due = match self.policy.completion {
            AtsCompletion::Immediate => return,
            AtsCompletion::After(n) => Some(self.now.saturating_add(u64::from(n))),
            AtsCompletion::Never => None,
        };
        let deadline = self.now.saturating_add(u64::from(self.policy.timeout_ticks.max(1)));
        self.outstanding.push_back(Outstanding { sid, due, deadline });
        self.stats.waited += 1;
    }

    /// Whether a request is still waited for (a wait descriptor / CMD_SYNC must wait).
    #[must_use]
    pub fn busy(&self) -> bool {
        !self.outstanding.is_empty()
    }

    /// One tick: completions that are due arrive; returns the device of the first request
    /// whose time-out has expired, if one has (counted; the model then [`abandon`](Self::abandon)s
    /// or [`rearm`](Self::rearm)s).
    pub fn tick(&mut self) -> Option<u32> {
        self.now = self.now.saturating_add(1);
        let now = self.now;
        let before = self.outstanding.len();
        // A completion due at the same tick as the deadline wins: it arrived in time.
        self.outstanding.retain(|o| o.due.is_none_or(|d| d > now));
        self.stats.completed += (before - self.outstanding.len()) as u64;
        let expired = self.outstanding.iter().find(|o| o.deadline <= now).map(|o| o.sid);
        if expired.is_some() {
            self.stats.timed_out += 1;
        }
        expired
    }

    /// A completion from `sid` (the embedder playing the device): completes the oldest
    /// request to it; `false` (counted) if none was waited for.
    pub fn complete(&mut self, sid: u32) -> bool {
        match self.outstanding.iter().position(|o| o.sid == sid) {
            Some(i) => {
                self.outstanding.remove(i);
                self.stats.completed += 1;
                true
            }
            None => {
                self.stats.unexpected += 1;
                false
            }
        }
    }

    /// The unit stops waiting for every request (VT-d after ITE: software resubmits).
    pub fn abandon(&mut self) {
        self.outstanding.clear();
    }

    /// The unit goes on waiting for the requests whose time-out expired, each with a new
    /// time-out from now (SMMUv3: a retried CMD_SYNC waits for them again).
    pub fn rearm(&mut self) {
        let (now, t) = (self.now, u64::from(self.policy.timeout_ticks.max(1)));
        for o in self.outstanding.iter_mut().filter(|o| o.deadline <= now) {
            o.deadline = now.saturating_add(t);
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> AtsTrackerStats {
        AtsTrackerStats { outstanding: self.outstanding.len() as u64, ..self.stats }
    }
}

/// xorshift64*: small, deterministic, good enough to choose a moment.
fn next(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn bump(n: u32) -> impl FnOnce(&AtomicU32) + Send + Sync {
        move |c: &AtomicU32| {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn forgiving_runs_at_once_strict_at_the_sync() {
        let c = AtomicU32::new(0);
        let f = Deferred::new(Profile::Forgiving);
        f.issue(&c, bump(1));
        assert_eq!(c.load(Ordering::Relaxed), 1);
        assert_eq!(f.stats(), DeferredStats::default());

        let s = Deferred::new(Profile::STRICT);
        s.issue(&c, bump(10));
        s.issue(&c, bump(100));
        for _ in 0..64 {
            s.tick(&c);
        }
        assert_eq!(c.load(Ordering::Relaxed), 1, "AtSync never applies early");
        assert_eq!(s.stats().pending, 2);
        s.sync(&c);
        assert_eq!(c.load(Ordering::Relaxed), 111);
        assert_eq!(
            s.stats(),
            DeferredStats { deferred: 2, applied_at_sync: 2, ..Default::default() }
        );
    }

    /// The order of early applications for a seed: which op went at which tick.
    fn schedule(seed: u64) -> Vec<(u32, u32)> {
        let c = AtomicU32::new(0);
        let d = Deferred::new(Profile::Strict(Apply::Seeded(seed)));
        for i in 0..8 {
            d.issue(&c, bump(1 << i));
        }
        let mut seen = Vec::new();
        for t in 0..16 {
            let before = c.load(Ordering::Relaxed);
            d.tick(&c);
            let after = c.load(Ordering::Relaxed);
            if after != before {
                seen.push((t, after - before));
            }
        }
        d.sync(&c);
        assert_eq!(c.load(Ordering::Relaxed), 0xff, "everything applied by the sync");
        let s = d.stats();
        assert_eq!(s.applied_early + s.applied_at_sync, 8);
        assert_eq!(s.applied_early, u64::try_from(seen.len()).unwrap_or(0));
        seen
    }

    #[test]
    fn seeded_is_repeatable_and_seeds_differ() {
        let runs: Vec<_> = (0..6).map(schedule).collect();
        for (seed, run) in runs.iter().enumerate() {
            assert_eq!(*run, schedule(seed as u64), "seed {seed} repeats");
        }
        assert!(runs.iter().any(|r| !r.is_empty()), "some seed applies early");
        assert!(runs.windows(2).any(|w| w[0] != w[1]), "seeds choose differently");
    }

    #[test]
    fn ats_tracker_completes_times_out_and_counts() {
        let mut t = AtsTracker::new(AtsPolicy::default());
        t.sent(1);
        assert!(!t.busy(), "immediate completions are never waited for");

        let mut t =
            AtsTracker::new(AtsPolicy { completion: AtsCompletion::After(3), timeout_ticks: 5 });
        t.sent(7);
        assert!(t.busy());
        assert_eq!((t.tick(), t.tick()), (None, None));
        assert!(t.busy(), "due at tick 3");
        assert_eq!(t.tick(), None);
        assert!(!t.busy());

        let mut t =
            AtsTracker::new(AtsPolicy { completion: AtsCompletion::Never, timeout_ticks: 2 });
        t.sent(9);
        assert_eq!(t.tick(), None);
        assert_eq!(t.tick(), Some(9), "the deadline is 2 ticks after the request");
        t.rearm();
        assert_eq!((t.tick(), t.tick()), (None, Some(9)), "re-armed for 2 more ticks");
        assert!(t.complete(9), "the embedder's late completion");
        assert!(!t.complete(9), "a second one matches nothing");
        t.sent(4);
        t.abandon();
        assert!(!t.busy());
        let s = t.stats();
        assert_eq!(
            (s.waited, s.completed, s.timed_out, s.unexpected, s.outstanding),
            (2, 1, 2, 1, 0)
        );
    }

    #[test]
    fn ats_completions_parse_and_print() {
        for s in ["immediate", "after:12", "never"] {
            assert_eq!(s.parse::<AtsCompletion>().map(|c| c.to_string()).as_deref(), Ok(s));
        }
        assert!("after:".parse::<AtsCompletion>().is_err());
        assert!("sometimes".parse::<AtsCompletion>().is_err());
    }

    #[test]
    fn profiles_parse_and_print() {
        for s in ["forgiving", "strict", "strict:42"] {
            let p: Profile = s.parse().unwrap_or_default();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!("strict:7".parse(), Ok(Profile::Strict(Apply::Seeded(7))));
        assert!("lenient".parse::<Profile>().is_err());
        assert!("strict:x".parse::<Profile>().is_err());
    }
}
