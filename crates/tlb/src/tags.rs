//! Which tags a group's cached entries carry, so that a range invalidation can name their keys.
//!
//! Some entries are tagged with something the invalidation does not name: a VT-d second-stage
//! translation in scalable mode carries the PASID that used it, while a page-selective IOTLB
//! invalidation names only the domain; an SMMUv3 stage-1 entry carries its ASID, while
//! CMD_TLBI_NH_VAA names only the VMID. Without knowing the tags, such an invalidation must
//! search every set. A [`TagRegistry`] keeps, per group (domain, VMID), the few tags its
//! entries were inserted under, so the invalidation can name a key per tag instead; a group
//! with more than [`TAGS_PER_GROUP`] tags, or whose entries cannot be named at all (VT-d nested
//! translations, selected by guest-physical address), or one that finds the table of groups
//! full, falls back to every set.
//!
//! The protocol is the cache's epoch, seen from the other side. An insert records its tag on
//! the miss path ([`TagRegistry::record`], never on a hit), which ends with a `SeqCst` fence,
//! and then inserts with the epoch it read before its walk. An invalidation advances the epoch
//! and then reads the tags ([`TagRegistry::tags`], which begins with a `SeqCst` fence: call it
//! from the `keys` closure of [`Cache::invalidate_keys`](crate::Cache::invalidate_keys)). Of a
//! store before one fence and a load after the other, at least one sees the other's write, so
//! either the invalidation sees the tag or the insert sees the new epoch and is refused. A
//! record that finds its tag already there (a load, no store) is covered as well: the load
//! read a store that the invalidation's load, had it missed it, would be coherence-ordered
//! before, which puts the invalidation's fence before the recorder's and so the new epoch
//! before the recorder's insert (C++20 [atomics.order] p4, the fence rules).
//!
//! Tags are forgotten only just before an invalidation that removes every entry they covered
//! ([`forget_group`](TagRegistry::forget_group), [`forget_tag`](TagRegistry::forget_tag),
//! [`forget_all`](TagRegistry::forget_all)): the forgetting is ordered before that
//! invalidation's epoch advance, so a walk that reads the new epoch records into the emptied
//! registry, and a walk that read the old one is refused or its entry removed. While a strict
//! model runs an invalidation to mark what it selects ([`marking`](crate::sanitize::marking)),
//! nothing is removed and nothing is forgotten. `tests/loom.rs` checks the race.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

/// Whether a range invalidation should name its `keys` in a cache of `sets` sets rather than
/// search every set: a named key costs about two sets of a full search (it is made, hashed,
/// sorted, and its set locked and searched; BENCHMARKS.md session 9), so only while the keys
/// are fewer than half the sets. Deciding it from a count before making any key saves making
/// and hashing as many keys as there are sets only to give up
/// ([`Cache::invalidate_keys`](crate::Cache::invalidate_keys) still gives up at that many).
pub fn worth_naming(keys: u64, sets: usize) -> bool {
    keys.saturating_mul(2) < u64::try_from(sets).unwrap_or(u64::MAX)
}

/// Most tags a group keeps before it falls back to every set.
pub const TAGS_PER_GROUP: usize = 8;

/// One group's place in the registry. Words hold a value plus one (0: free).
#[derive(Debug)]
struct Slot {
    group: AtomicU64,
    tags: [AtomicU64; TAGS_PER_GROUP],
    /// Some entry of the group is not named by its tags: search every set.
    every: AtomicBool,
}

impl Slot {
    fn new() -> Self {
        Self {
            group: AtomicU64::new(0),
            tags: std::array::from_fn(|_| AtomicU64::new(0)),
            every: AtomicBool::new(false),
        }
    }

    /// Sets `every` (a store only when it was clear).
    fn set_every(&self, fell_back: &AtomicU64) {
        if !self.every.load(Ordering::Relaxed) {
            self.every.store(true, Ordering::Relaxed);
            fell_back.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The tags of one group an invalidation names keys for: at most [`TAGS_PER_GROUP`], each
/// once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagList {
    tags: [u64; TAGS_PER_GROUP],
    len: usize,
}

impl TagList {
    /// The tags, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.tags.iter().take(self.len).copied()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, tag: u64) {
        if !self.iter().any(|t| t == tag) {
            if let Some(slot) = self.tags.get_mut(self.len) {
                *slot = tag;
                self.len += 1;
            }
        }
    }
}

impl IntoIterator for TagList {
    type Item = u64;
    type IntoIter = std::iter::Take<std::array::IntoIter<u64, TAGS_PER_GROUP>>;

    fn into_iter(self) -> Self::IntoIter {
        self.tags.into_iter().take(self.len)
    }
}

/// What a registry has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagStats {
    /// Tags placed (a tag recorded again while kept is not counted).
    pub recorded: u64,
    /// Times a group began to fall back to every set: more tags than it keeps, entries that
    /// cannot be named, or no room for the group.
    pub fell_back: u64,
    /// Invalidations told to search every set.
    pub every_set: u64,
}

/// Per group, the tags its cached entries were inserted under (see the module doc). Groups and
/// tags are any `u64` but `u64::MAX`. Bounded: `groups` groups (a power of two) of
/// [`TAGS_PER_GROUP`] tags; recording allocates nothing.
#[derive(Debug)]
pub struct TagRegistry {
    slots: Box<[Slot]>,
    /// A group found no free slot: a group not in the table may have tagged entries.
    unplaced: AtomicBool,
    recorded: AtomicU64,
    fell_back: AtomicU64,
    every_set: AtomicU64,
}

/// A word for a value (plus one, so that 0 is free; `u64::MAX` wraps to 0 and is never
/// found, which only makes a lookup fall back).
fn word(v: u64) -> u64 {
    v.wrapping_add(1)
}

impl TagRegistry {
    /// A registry for `groups` groups (rounded up to a power of two, at least 1).
    pub fn new(groups: usize) -> Self {
        let n = groups.clamp(1, 1 << 16).next_power_of_two();
        Self {
            slots: (0..n).map(|_| Slot::new()).collect(),
            unplaced: AtomicBool::new(false),
            recorded: AtomicU64::new(0),
            fell_back: AtomicU64::new(0),
            every_set: AtomicU64::new(0),
        }
    }

    /// The slots in `group`'s probe order: from its hash, round the table once.
    fn probe(&self, group: u64) -> impl Iterator<Item = &Slot> {
        let n = self.slots.len();
        let start = usize::try_from(group.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32).unwrap_or(0);
        (0..n).filter_map(move |i| self.slots.get((start.wrapping_add(i)) & (n - 1)))
    }

    /// `group`'s slot, if it has one.
    fn find(&self, group: u64) -> Option<&Slot> {
        let w = word(group);
        for slot in self.probe(group) {
            match slot.group.load(Ordering::Relaxed) {
                0 => return None,
                g if g == w => return Some(slot),
                _ => {}
            }
        }
        None
    }

    /// `group`'s slot, claiming a free one if it has none; `None` if the table is full.
    fn find_or_claim(&self, group: u64) -> Option<&Slot> {
        let w = word(group);
        for slot in self.probe(group) {
            let mut now = slot.group.load(Ordering::Relaxed);
            if now == 0 {
                now = match slot.group.compare_exchange(0, w, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => w,
                    Err(other) => other,
                };
            }
            if now == w {
                return Some(slot);
            }
        }
        None
    }

    /// Records that an entry of `group` tagged `tag` is about to be inserted. Call it on the
    /// miss path after reading the cache's epoch and before inserting; it ends with the fence
    /// the protocol needs (the module doc).
    pub fn record(&self, group: u64, tag: u64) {
        match self.find_or_claim(group) {
            Some(slot) => {
                let w = word(tag);
                let kept = slot.tags.iter().any(|t| t.load(Ordering::Relaxed) == w)
                    || slot.tags.iter().any(|t| {
                        match t.compare_exchange(0, w, Ordering::Relaxed, Ordering::Relaxed) {
                            Ok(_) => {
                                self.recorded.fetch_add(1, Ordering::Relaxed);
                                true
                            }
                            Err(other) => other == w,
                        }
                    });
                if !kept {
                    slot.set_every(&self.fell_back);
                }
            }
            None => self.set_unplaced(),
        }
        fence(Ordering::SeqCst);
    }

    /// Records that an entry of `group` that no tag names is about to be inserted: the group
    /// falls back to every set until it is forgotten. The same protocol as
    /// [`record`](Self::record).
    pub fn record_unnamed(&self, group: u64) {
        match self.find_or_claim(group) {
            Some(slot) => slot.set_every(&self.fell_back),
            None => self.set_unplaced(),
        }
        fence(Ordering::SeqCst);
    }

    fn set_unplaced(&self) {
        if !self.unplaced.load(Ordering::Relaxed) {
            self.unplaced.store(true, Ordering::Relaxed);
            self.fell_back.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The tags `group`'s entries may carry, or `None`: search every set. Call it after the
    /// cache's epoch has advanced (from [`Cache::invalidate_keys`](crate::Cache::invalidate_keys)'s
    /// `keys`); it begins with the fence the protocol needs.
    pub fn tags(&self, group: u64) -> Option<TagList> {
        fence(Ordering::SeqCst);
        let found = match self.find(group) {
            None if self.unplaced.load(Ordering::Relaxed) => None,
            None => Some(TagList::default()),
            Some(slot) if slot.every.load(Ordering::Relaxed) => None,
            Some(slot) => {
                let mut list = TagList::default();
                for t in &slot.tags {
                    let w = t.load(Ordering::Relaxed);
                    if w != 0 {
                        list.push(w.wrapping_sub(1));
                    }
                }
                Some(list)
            }
        };
        if found.is_none() {
            self.every_set.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Forgets `group`'s tags (and its fallback), just before an invalidation that removes
    /// every entry of the group they covered. Nothing while marking.
    pub fn forget_group(&self, group: u64) {
        if crate::sanitize::is_marking() {
            return;
        }
        if let Some(slot) = self.find(group) {
            for t in &slot.tags {
                t.store(0, Ordering::Relaxed);
            }
            slot.every.store(false, Ordering::Relaxed);
        }
    }

    /// Forgets `tag` of `group`, just before an invalidation that removes every entry of the
    /// group so tagged. The group's fallback stays (its other entries are unknown). Nothing
    /// while marking.
    pub fn forget_tag(&self, group: u64, tag: u64) {
        if crate::sanitize::is_marking() {
            return;
        }
        if let Some(slot) = self.find(group) {
            let w = word(tag);
            for t in &slot.tags {
                let _ = t.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// Forgets every group, just before an invalidation that removes every entry. Nothing
    /// while marking.
    pub fn forget_all(&self) {
        if crate::sanitize::is_marking() {
            return;
        }
        for slot in self.slots.iter() {
            slot.group.store(0, Ordering::Relaxed);
            for t in &slot.tags {
                t.store(0, Ordering::Relaxed);
            }
            slot.every.store(false, Ordering::Relaxed);
        }
        self.unplaced.store(false, Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn stats(&self) -> TagStats {
        TagStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            fell_back: self.fell_back.load(Ordering::Relaxed),
            every_set: self.every_set.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn sorted(list: Option<TagList>) -> Option<Vec<u64>> {
        list.map(|l| {
            let mut v: Vec<u64> = l.iter().collect();
            v.sort_unstable();
            v
        })
    }

    #[test]
    fn a_group_keeps_its_tags_once_each_and_others_have_none() {
        let r = TagRegistry::new(4);
        for tag in [5, 1, 5, 0, 1] {
            r.record(7, tag);
        }
        assert_eq!(sorted(r.tags(7)), Some(vec![0, 1, 5]));
        assert_eq!(sorted(r.tags(8)), Some(vec![]));
        assert_eq!(r.stats(), TagStats { recorded: 3, fell_back: 0, every_set: 0 });
    }

    #[test]
    fn too_many_tags_or_an_unnamed_entry_fall_back_until_forgotten() {
        let r = TagRegistry::new(4);
        for tag in 0..TAGS_PER_GROUP as u64 {
            r.record(1, tag);
        }
        assert_eq!(r.tags(1).map(|l| l.len()), Some(TAGS_PER_GROUP));
        r.record(1, 99);
        assert_eq!(r.tags(1), None);
        r.forget_group(1);
        assert_eq!(sorted(r.tags(1)), Some(vec![]));
        r.record(2, 3);
        r.record_unnamed(2);
        assert_eq!(r.tags(2), None);
        assert_eq!(sorted(r.tags(1)), Some(vec![]), "another group is unaffected");
        r.forget_all();
        assert_eq!(sorted(r.tags(2)), Some(vec![]));
        assert_eq!(r.stats().fell_back, 2);
        assert_eq!(r.stats().every_set, 2);
    }

    #[test]
    fn a_forgotten_tag_goes_and_the_others_stay() {
        let r = TagRegistry::new(4);
        for tag in [1, 2, 3] {
            r.record(9, tag);
        }
        r.forget_tag(9, 2);
        assert_eq!(sorted(r.tags(9)), Some(vec![1, 3]));
        // Its word is free again.
        r.record(9, 4);
        assert_eq!(sorted(r.tags(9)), Some(vec![1, 3, 4]));
    }

    /// A full table of groups: a group with no room makes every group without a slot fall
    /// back, while the placed ones keep naming their tags.
    #[test]
    fn groups_beyond_the_table_fall_back() {
        let r = TagRegistry::new(2);
        r.record(1, 10);
        r.record(2, 20);
        assert_eq!(sorted(r.tags(3)), Some(vec![]));
        r.record(3, 30);
        assert_eq!(r.tags(3), None);
        assert_eq!(r.tags(4), None, "an unplaced group may be any group without a slot");
        assert_eq!(sorted(r.tags(1)), Some(vec![10]));
        assert_eq!(sorted(r.tags(2)), Some(vec![20]));
        r.forget_all();
        r.record(3, 30);
        assert_eq!(sorted(r.tags(3)), Some(vec![30]));
        assert_eq!(sorted(r.tags(4)), Some(vec![]));
    }

    #[test]
    fn marking_forgets_nothing() {
        let r = TagRegistry::new(2);
        r.record(1, 10);
        crate::sanitize::marking(|| {
            r.forget_group(1);
            r.forget_tag(1, 10);
            r.forget_all();
        });
        assert_eq!(sorted(r.tags(1)), Some(vec![10]));
    }

    /// Threads recording at once lose no tag (each placed once, or the group falls back).
    #[test]
    fn concurrent_records_lose_nothing() {
        let r = TagRegistry::new(8);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let r = &r;
                s.spawn(move || {
                    for i in 0..200u64 {
                        r.record(i % 3, (t + i) % 6);
                    }
                });
            }
        });
        for g in 0..3 {
            assert_eq!(sorted(r.tags(g)), Some((0..6).collect()), "group {g}");
        }
    }
}
