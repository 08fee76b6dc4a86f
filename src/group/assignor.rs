//! Consumer-group partition assignors, following the semantics of Kafka's Java client.
//!
//! When a group rebalances, its leader hands every member's subscription to an [`Assignor`], which decides which
//! member owns which partition. Every partition of a topic that at least one member subscribes to goes to exactly one
//! member subscribed to that topic; topics nobody subscribes to are left out, and every member appears in the result,
//! possibly with nothing. All three assignors are deterministic: the same input always gives the same output.
//!
//! * [`RangeAssignor`] (`"range"`) works one topic at a time. The members subscribed to the topic, in member-id
//!   order, each get a run of consecutive partitions; with `P` partitions and `M` members each gets `P / M` and the
//!   first `P % M` get one more. Members listed first tend to get more when several topics do not divide evenly.
//! * [`RoundRobinAssignor`] (`"roundrobin"`) lists all partitions of all subscribed topics by topic and then
//!   partition, and deals them one by one to the members in member-id order, going round in a circle and skipping
//!   members not subscribed to the partition's topic.
//! * [`StickyAssignor`] (`"sticky"`) produces a balanced assignment (partition counts differ by at most one when all
//!   members subscribe to the same topics, and are as even as the subscriptions allow otherwise) and, subject to that,
//!   leaves as many partitions as possible with the member that owned them before. With no previous owners it gives
//!   the round-robin result when all subscriptions are the same.
//!
//! Three members `m1`, `m2`, `m3` all subscribed to topic `t` with seven partitions:
//!
//! ```text
//!        range           roundrobin      sticky
//! m1     t-0 t-1 t-2     t-0 t-3 t-6     t-0 t-3 t-6
//! m2     t-3 t-4         t-1 t-4         t-1 t-4
//! m3     t-5 t-6         t-2 t-5         t-2 t-5
//! ```
//!
//! If `m3` then leaves, sticky moves only `m3`'s partitions; range and roundrobin reshuffle:
//!
//! ```text
//!        range            roundrobin       sticky
//! m1     t-0 t-1 t-2 t-3  t-0 t-2 t-4 t-6  t-0 t-3 t-5 t-6
//! m2     t-4 t-5 t-6      t-1 t-3 t-5      t-1 t-2 t-4
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::topic::TopicPartition;

/// One member of a group as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member's id; assignors order members by it.
    pub member_id: String,
    /// Topics it subscribed to (sorted, no duplicates).
    pub topics: Vec<String>,
    /// Partitions it owned under the previous assignment (empty for a new member); Sticky keeps them where it can.
    pub owned: Vec<TopicPartition>,
}

/// Decides which member of a group owns which partition.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// A short name ("range", "roundrobin", "sticky").
    fn name(&self) -> &str;

    /// Maps every member id to its partitions (sorted by topic then partition). Every partition of every topic in
    /// `partitions` (topic -> partition count) that at least one member subscribes to must go to exactly one member
    /// that subscribes to its topic; every member appears in the result, possibly with an empty list. `members` are
    /// sorted by `member_id`. If the result breaks these rules, or `assign` panics, the group logs an error and uses
    /// [`RangeAssignor`] for that generation.
    ///
    /// It runs on the thread of the member whose poll rebalances, holding the group's lock: it must not call back
    /// into the broker's group operations for its own group (`describe_group`, `list_groups`, `delete_group`,
    /// `reset_offsets`, or a consumer joining it), which wait for that lock. Decide from the arguments alone.
    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// Kafka's range assignor: per topic, consecutive runs of partitions to the subscribed members in member-id order.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

/// Kafka's round-robin assignor: all partitions dealt in turn to the members, skipping members not subscribed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

/// Kafka's sticky assignor: a balanced assignment that moves as few previously owned partitions as it can.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// A partition in index form: (index into [`Group::topics`], partition number).
type Slot = (usize, u32);

/// A value for every assignable partition of a [`Group`].
struct PerPartition<T>(Vec<Vec<T>>);

impl<T: Clone> PerPartition<T> {
    fn new(g: &Group<'_>, value: T) -> Self {
        PerPartition(
            g.topics
                .iter()
                .map(|&(_, count)| vec![value.clone(); count as usize])
                .collect(),
        )
    }

    fn get(&self, (t, p): Slot) -> Option<&T> {
        self.0.get(t)?.get(p as usize)
    }

    fn get_mut(&mut self, (t, p): Slot) -> Option<&mut T> {
        self.0.get_mut(t)?.get_mut(p as usize)
    }
}

/// The input of an assignment, normalised: members unique and sorted by id, topics limited to those that have
/// partitions and at least one subscriber.
struct Group<'a> {
    /// Members sorted by id; for a repeated id only the first occurrence is kept.
    members: Vec<&'a MemberSubscription>,
    /// Assignable topics as (name, partition count), sorted by name.
    topics: Vec<(&'a str, u32)>,
    /// For each topic, the indices of the members subscribed to it, ascending.
    subscribers: Vec<Vec<usize>>,
    /// For each member, the indices of the assignable topics it subscribes to, ascending.
    member_topics: Vec<Vec<usize>>,
}

impl<'a> Group<'a> {
    fn new(members: &'a [MemberSubscription], partitions: &'a BTreeMap<String, u32>) -> Self {
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        sorted.dedup_by(|later, earlier| later.member_id == earlier.member_id);
        // Candidate topics: those with partitions, indexed in name order.
        let candidates: Vec<(&str, u32)> = partitions
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(name, &count)| (name.as_str(), count))
            .collect();
        let index: HashMap<&str, usize> = candidates.iter().enumerate().map(|(i, &(name, _))| (name, i)).collect();
        let mut candidate_subs: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
        for (m, member) in sorted.iter().enumerate() {
            let mut mine: Vec<usize> = member
                .topics
                .iter()
                .filter_map(|t| index.get(t.as_str()).copied())
                .collect();
            mine.sort_unstable();
            mine.dedup();
            for t in mine {
                if let Some(subs) = candidate_subs.get_mut(t) {
                    subs.push(m);
                }
            }
        }
        // Keep only topics somebody subscribes to.
        let mut topics = Vec::new();
        let mut subscribers = Vec::new();
        for (topic, subs) in candidates.into_iter().zip(candidate_subs) {
            if !subs.is_empty() {
                topics.push(topic);
                subscribers.push(subs);
            }
        }
        let mut member_topics = vec![Vec::new(); sorted.len()];
        for (t, subs) in subscribers.iter().enumerate() {
            for &m in subs {
                if let Some(list) = member_topics.get_mut(m) {
                    list.push(t);
                }
            }
        }
        Group {
            members: sorted,
            topics,
            subscribers,
            member_topics,
        }
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    fn count(&self, t: usize) -> u32 {
        self.topics.get(t).map_or(0, |&(_, count)| count)
    }

    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.binary_search_by(|&(n, _)| n.cmp(name)).ok()
    }

    fn subscribes(&self, m: usize, t: usize) -> bool {
        self.member_topics.get(m).is_some_and(|ts| ts.binary_search(&t).is_ok())
    }

    fn total(&self) -> usize {
        self.topics
            .iter()
            .fold(0usize, |acc, &(_, count)| acc.saturating_add(count as usize))
    }

    /// Every assignable partition, sorted by topic then partition.
    fn all_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.topics
            .iter()
            .enumerate()
            .flat_map(|(t, &(_, count))| (0..count).map(move |p| (t, p)))
    }

    /// Turns per-member slot lists (indexed like `members`) into the public result shape.
    fn result(&self, per_member: Vec<Vec<Slot>>) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out: BTreeMap<String, Vec<TopicPartition>> =
            self.members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
        for (member, mut slots) in self.members.iter().zip(per_member) {
            slots.sort_unstable();
            slots.dedup();
            let list = slots
                .into_iter()
                .filter_map(|(t, p)| self.topics.get(t).map(|&(name, _)| TopicPartition::new(name, p)))
                .collect();
            out.insert(member.member_id.clone(), list);
        }
        out
    }
}

impl Assignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let g = Group::new(members, partitions);
        let mut per_member: Vec<Vec<Slot>> = vec![Vec::new(); g.len()];
        for (t, subs) in g.subscribers.iter().enumerate() {
            let count = u64::from(g.count(t));
            let m = subs.len() as u64;
            let (Some(each), Some(extra)) = (count.checked_div(m), count.checked_rem(m)) else {
                continue;
            };
            let mut start = 0u64;
            for (i, &member) in subs.iter().enumerate() {
                let len = each + u64::from((i as u64) < extra);
                if let Some(list) = per_member.get_mut(member) {
                    list.extend(
                        (start..start + len)
                            .filter_map(|p| u32::try_from(p).ok())
                            .map(|p| (t, p)),
                    );
                }
                start += len;
            }
        }
        g.result(per_member)
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let g = Group::new(members, partitions);
        let mut per_member: Vec<Vec<Slot>> = vec![Vec::new(); g.len()];
        // The member the circular dealer points at; it persists across topics, as in Kafka.
        let mut cursor = 0usize;
        for (t, p) in g.all_slots() {
            let Some(subs) = g.subscribers.get(t) else { continue };
            // The first subscriber at or after the cursor, wrapping round to the first subscriber.
            let pos = subs.partition_point(|&m| m < cursor);
            let Some(&member) = subs.get(pos).or_else(|| subs.first()) else {
                continue;
            };
            if let Some(list) = per_member.get_mut(member) {
                list.push((t, p));
            }
            cursor = member + 1;
        }
        g.result(per_member)
    }
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &str {
        "sticky"
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let g = Group::new(members, partitions);
        if g.len() == 0 {
            return BTreeMap::new();
        }
        let owned = valid_owned(&g);
        let uniform = g.member_topics.iter().all(|ts| Some(ts) == g.member_topics.first());
        let per_member = if uniform {
            sticky_uniform(&g, owned)
        } else {
            sticky_general(&g, owned)
        };
        g.result(per_member)
    }
}

/// The previously owned partitions each member may keep: they must still exist, belong to a topic the member
/// subscribes to, and not have been claimed already by a member earlier in member-id order. Each list is sorted.
fn valid_owned(g: &Group<'_>) -> Vec<Vec<Slot>> {
    let mut claimed = PerPartition::new(g, false);
    g.members
        .iter()
        .enumerate()
        .map(|(m, sub)| {
            let mut mine: Vec<Slot> = sub
                .owned
                .iter()
                .filter_map(|tp| {
                    let t = g.topic_index(&tp.topic)?;
                    (tp.partition < g.count(t) && g.subscribes(m, t)).then_some((t, tp.partition))
                })
                .collect();
            mine.sort_unstable();
            mine.dedup();
            mine.retain(|&slot| claimed.get_mut(slot).is_some_and(|c| !std::mem::replace(c, true)));
            mine
        })
        .collect()
}

/// Sticky assignment when every member subscribes to the same topics (Kafka's "constrained" assignment).
///
/// With `P` partitions and `M` members everybody ends with `P / M` or `P / M + 1` partitions, and exactly `P % M`
/// members with the larger number. Members keep their previous partitions up to that quota (the first members in
/// id order that owned more than the minimum get the larger quota); the rest are dealt round-robin to members below
/// the minimum and then one each to members at the minimum until the `P % M` extra places are taken.
fn sticky_uniform(g: &Group<'_>, owned: Vec<Vec<Slot>>) -> Vec<Vec<Slot>> {
    let n = g.len();
    let total = g.total();
    let min = total.checked_div(n).unwrap_or(0);
    let extra = total.checked_rem(n).unwrap_or(0);
    let max = min + usize::from(extra > 0);
    let mut at_max = 0usize;
    let mut kept = PerPartition::new(g, false);
    let mut assigned: Vec<Vec<Slot>> = owned
        .into_iter()
        .map(|mut mine| {
            let keep = if mine.len() <= min {
                mine.len()
            } else if mine.len() >= max && at_max < extra {
                at_max += 1;
                max
            } else {
                min
            };
            mine.truncate(keep);
            for &slot in &mine {
                if let Some(k) = kept.get_mut(slot) {
                    *k = true;
                }
            }
            mine
        })
        .collect();
    let mut unassigned = g.all_slots().filter(|&slot| kept.get(slot) == Some(&false));

    // Bring everybody up to the minimum, dealing round-robin.
    let mut queue: VecDeque<usize> = assigned
        .iter()
        .enumerate()
        .filter(|(_, a)| a.len() < min)
        .map(|(m, _)| m)
        .collect();
    while let Some(m) = queue.pop_front() {
        let Some(slot) = unassigned.next() else { break };
        if let Some(list) = assigned.get_mut(m) {
            list.push(slot);
            if list.len() < min {
                queue.push_back(m);
            }
        }
    }
    // Hand out the remaining extra places, one per member, in id order.
    for list in &mut assigned {
        if at_max >= extra {
            break;
        }
        if list.len() == min {
            let Some(slot) = unassigned.next() else { break };
            list.push(slot);
            at_max += 1;
        }
    }
    // The counting above leaves nothing over; this only guards the "every partition is assigned" promise.
    for slot in unassigned {
        if let Some(list) = assigned.iter_mut().min_by_key(|list| list.len()) {
            list.push(slot);
        }
    }
    assigned
}

/// Sticky assignment when subscriptions differ.
///
/// Members keep all their valid previous partitions; each remaining partition (those with the fewest possible
/// consumers first) goes to the least loaded member subscribed to its topic. Then the assignment is balanced by
/// moving partitions along chains `light <- a <- b <- ... <- heavy`, where each member takes partitions of topics it
/// subscribes to from the next (so only the two ends change count), until no member can gain a partition, directly
/// or through a chain, from one holding at least two more. That is as balanced as the subscriptions allow. Moves
/// prefer partitions the giver did not own before, and a partition that returns to its previous owner counts as
/// staying.
fn sticky_general(g: &Group<'_>, owned: Vec<Vec<Slot>>) -> Vec<Vec<Slot>> {
    let mut state = Holdings::new(g);
    for (m, mine) in owned.into_iter().enumerate() {
        for slot in mine {
            if let Some(owner) = state.previous.get_mut(slot) {
                *owner = Some(m);
            }
            state.give(m, slot);
        }
    }

    // Topics with the same subscribers share one "least loaded first" queue of (count, member).
    let mut class_ids: BTreeMap<&[usize], usize> = BTreeMap::new();
    let mut topic_class = Vec::with_capacity(g.subscribers.len());
    for subs in &g.subscribers {
        let next = class_ids.len();
        topic_class.push(*class_ids.entry(subs.as_slice()).or_insert(next));
    }
    let mut queues: Vec<BTreeSet<(usize, usize)>> = vec![BTreeSet::new(); class_ids.len()];
    let mut member_classes: Vec<Vec<usize>> = vec![Vec::new(); g.len()];
    for (subs, &class) in &class_ids {
        for &m in *subs {
            if let Some(queue) = queues.get_mut(class) {
                queue.insert((state.count(m), m));
            }
            if let Some(classes) = member_classes.get_mut(m) {
                classes.push(class);
            }
        }
    }

    let mut unassigned: Vec<Slot> = g
        .all_slots()
        .filter(|&slot| state.previous.get(slot) == Some(&None))
        .collect();
    unassigned.sort_by_key(|&(t, p)| (g.subscribers.get(t).map_or(0, Vec::len), t, p));
    for slot in unassigned {
        let Some(&class) = topic_class.get(slot.0) else {
            continue;
        };
        let Some(&(count, m)) = queues.get(class).and_then(BTreeSet::first) else {
            continue;
        };
        state.give(m, slot);
        for &c in member_classes.get(m).into_iter().flatten() {
            if let Some(queue) = queues.get_mut(c) {
                queue.remove(&(count, m));
                queue.insert((count + 1, m));
            }
        }
    }

    state.balance();
    state.into_slots()
}

/// Partitions of one topic held by one member.
#[derive(Debug, Default)]
struct Held {
    /// Partitions the member owned in the previous assignment.
    sticky: BTreeSet<u32>,
    /// Partitions newly given to the member.
    fresh: BTreeSet<u32>,
}

/// A mutable assignment used by the general sticky algorithm.
struct Holdings<'g, 'a> {
    g: &'g Group<'a>,
    /// Number of partitions per member.
    counts: Vec<usize>,
    /// Per member: topic index -> partitions held.
    held: Vec<BTreeMap<usize, Held>>,
    /// Per topic: members holding at least one of its partitions.
    holders: Vec<BTreeSet<usize>>,
    /// The valid previous owner of each partition that had one.
    previous: PerPartition<Option<usize>>,
}

impl<'g, 'a> Holdings<'g, 'a> {
    fn new(g: &'g Group<'a>) -> Self {
        Holdings {
            g,
            counts: vec![0; g.len()],
            held: (0..g.len()).map(|_| BTreeMap::new()).collect(),
            holders: vec![BTreeSet::new(); g.topics.len()],
            previous: PerPartition::new(g, None),
        }
    }

    fn count(&self, m: usize) -> usize {
        self.counts.get(m).copied().unwrap_or(0)
    }

    /// Gives partition `(t, p)` to `m`, remembering whether `m` owned it before.
    fn give(&mut self, m: usize, (t, p): Slot) {
        let sticky = self.previous.get((t, p)) == Some(&Some(m));
        let Some(held) = self.held.get_mut(m) else { return };
        let entry = held.entry(t).or_default();
        let inserted = if sticky {
            entry.sticky.insert(p)
        } else {
            entry.fresh.insert(p)
        };
        if inserted {
            if let Some(count) = self.counts.get_mut(m) {
                *count += 1;
            }
            if let Some(holders) = self.holders.get_mut(t) {
                holders.insert(m);
            }
        }
    }

    /// Removes one of `m`'s partitions of topic `t`: one it did not own before if there is one, otherwise (unless
    /// `fresh_only`) one it did.
    fn take(&mut self, m: usize, t: usize, fresh_only: bool) -> Option<u32> {
        let held = self.held.get_mut(m)?;
        let entry = held.get_mut(&t)?;
        let p = match entry.fresh.pop_first() {
            Some(p) => p,
            None if fresh_only => return None,
            None => entry.sticky.pop_first()?,
        };
        if entry.fresh.is_empty() && entry.sticky.is_empty() {
            held.remove(&t);
            if let Some(holders) = self.holders.get_mut(t) {
                holders.remove(&m);
            }
        }
        if let Some(count) = self.counts.get_mut(m) {
            *count = count.saturating_sub(1);
        }
        Some(p)
    }

    /// How many of `giver`'s partitions `receiver` could take (those of topics `receiver` subscribes to).
    fn capacity(&self, giver: usize, receiver: usize) -> usize {
        self.held
            .get(giver)
            .into_iter()
            .flatten()
            .filter(|&(&t, _)| self.g.subscribes(receiver, t))
            .fold(0, |acc, (_, h)| acc + h.sticky.len() + h.fresh.len())
    }

    /// Moves up to `k` partitions from `giver` to `receiver`, taking those `giver` did not own before first.
    fn transfer(&mut self, giver: usize, receiver: usize, k: usize) -> usize {
        let topics: Vec<usize> = self
            .held
            .get(giver)
            .into_iter()
            .flat_map(BTreeMap::keys)
            .copied()
            .filter(|&t| self.g.subscribes(receiver, t))
            .collect();
        let mut moved = 0;
        for fresh_only in [true, false] {
            for &t in &topics {
                while moved < k {
                    let Some(p) = self.take(giver, t, fresh_only) else {
                        break;
                    };
                    self.give(receiver, (t, p));
                    moved += 1;
                }
            }
        }
        moved
    }

    /// Moves partitions along chains until no member can gain a partition, directly or through a chain, from a
    /// member holding at least two more than it. Every move lowers the sum of squared counts, so this ends.
    /// A partition handed back to its previous owner counts as its own again.
    fn balance(&mut self) {
        let active: Vec<usize> = (0..self.g.len())
            .filter(|&m| !self.g.member_topics.get(m).is_none_or(Vec::is_empty))
            .collect();
        loop {
            let mut order = active.clone();
            order.sort_by_key(|&m| (self.count(m), m));
            let mut improved = false;
            for &light in &order {
                loop {
                    let max = active.iter().map(|&m| self.count(m)).max().unwrap_or(0);
                    if max < self.count(light) + 2 {
                        break;
                    }
                    let Some(chain) = self.find_chain(light, max) else {
                        break;
                    };
                    if !self.apply_chain(&chain) {
                        break;
                    }
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
    }

    /// Breadth-first search from `light` for a chain ending at the most loaded member it can reach (stopping early
    /// at one holding `max`), if that member holds at least two more partitions than `light`. Returns the steps as
    /// (giver, receiver), starting with the step into `light`; the chain is a shortest one.
    fn find_chain(&self, light: usize, max: usize) -> Option<Vec<(usize, usize)>> {
        let n = self.g.len();
        let target = self.count(light) + 2;
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut visited = vec![false; n];
        let mut topic_done = vec![false; self.g.topics.len()];
        if let Some(v) = visited.get_mut(light) {
            *v = true;
        }
        let mut best: Option<(usize, usize)> = None;
        let mut queue = VecDeque::from([light]);
        'search: while let Some(receiver) = queue.pop_front() {
            for &t in self.g.member_topics.get(receiver).into_iter().flatten() {
                match topic_done.get_mut(t) {
                    Some(done) if !*done => *done = true,
                    _ => continue,
                }
                for &giver in self.holders.get(t).into_iter().flatten() {
                    match visited.get_mut(giver) {
                        Some(seen) if !*seen => *seen = true,
                        _ => continue,
                    }
                    if let Some(slot) = parent.get_mut(giver) {
                        *slot = Some(receiver);
                    }
                    // The heaviest reachable member wins; among equals the nearest, then the lowest index.
                    let count = self.count(giver);
                    if count >= target && best.is_none_or(|(c, _)| count > c) {
                        best = Some((count, giver));
                        if count >= max {
                            break 'search;
                        }
                    }
                    queue.push_back(giver);
                }
            }
        }
        let (_, heavy) = best?;
        let mut chain = Vec::new();
        let mut current = heavy;
        while let Some(&Some(to)) = parent.get(current) {
            chain.push((current, to));
            current = to;
            if chain.len() > n {
                return None;
            }
        }
        chain.reverse();
        Some(chain)
    }

    /// Moves partitions along `chain` (each giver passes some to its receiver, so only the ends change count) as
    /// many times as keeps the ends in order: at most half their difference, and no more than any step can carry.
    /// Returns whether anything moved.
    fn apply_chain(&mut self, chain: &[(usize, usize)]) -> bool {
        let (Some(&(_, light)), Some(&(heavy, _))) = (chain.first(), chain.last()) else {
            return false;
        };
        let mut k = self.count(heavy).saturating_sub(self.count(light)) / 2;
        for &(giver, receiver) in chain {
            k = k.min(self.capacity(giver, receiver));
        }
        if k == 0 {
            return false;
        }
        // Starting at the light end, every giver still holds what the capacities were computed from.
        for &(giver, receiver) in chain {
            if self.transfer(giver, receiver, k) < k {
                return false;
            }
        }
        true
    }

    fn into_slots(self) -> Vec<Vec<Slot>> {
        self.held
            .into_iter()
            .map(|topics| {
                topics
                    .into_iter()
                    .flat_map(|(t, held)| held.sticky.into_iter().chain(held.fresh).map(move |p| (t, p)))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: Vec::new(),
        }
    }

    fn parts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|&(t, n)| (t.to_string(), n)).collect()
    }

    fn tps(list: &[(&str, u32)]) -> Vec<TopicPartition> {
        list.iter().map(|&(t, p)| TopicPartition::new(t, p)).collect()
    }

    fn expect(entries: &[(&str, &[(&str, u32)])]) -> BTreeMap<String, Vec<TopicPartition>> {
        entries.iter().map(|&(m, list)| (m.to_string(), tps(list))).collect()
    }

    /// Members subscribing to `topics` whose `owned` is what `previous` gave them.
    fn with_owned(
        members: &[MemberSubscription],
        previous: &BTreeMap<String, Vec<TopicPartition>>,
    ) -> Vec<MemberSubscription> {
        members
            .iter()
            .map(|m| MemberSubscription {
                owned: previous.get(&m.member_id).cloned().unwrap_or_default(),
                ..m.clone()
            })
            .collect()
    }

    /// Partitions that are assigned in both maps but to different members, plus ones that disappeared.
    fn moved(before: &BTreeMap<String, Vec<TopicPartition>>, after: &BTreeMap<String, Vec<TopicPartition>>) -> usize {
        before
            .iter()
            .flat_map(|(m, list)| list.iter().map(move |tp| (m, tp)))
            .filter(|(m, tp)| !after.get(*m).is_some_and(|l| l.contains(tp)))
            .count()
    }

    /// Checks the contract shared by all assignors; returns the per-member counts.
    fn check_valid(
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, u32>,
        result: &BTreeMap<String, Vec<TopicPartition>>,
    ) -> BTreeMap<String, usize> {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        let got: BTreeSet<&str> = result.keys().map(String::as_str).collect();
        assert_eq!(ids, got, "every member appears exactly once");
        let mut seen: BTreeMap<TopicPartition, &str> = BTreeMap::new();
        for (m, list) in result {
            let sub = members.iter().find(|s| &s.member_id == m).unwrap();
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {list:?}");
            for tp in list {
                assert!(sub.topics.contains(&tp.topic), "{m} got {tp:?} without subscribing");
                assert!(
                    tp.partition < partitions.get(&tp.topic).copied().unwrap_or(0),
                    "{tp:?} does not exist"
                );
                assert!(seen.insert(tp.clone(), m).is_none(), "{tp:?} assigned twice");
            }
        }
        for (topic, &count) in partitions {
            let subscribed = members.iter().any(|m| m.topics.contains(topic));
            for p in 0..count {
                let tp = TopicPartition::new(topic.as_str(), p);
                assert_eq!(seen.contains_key(&tp), subscribed, "{tp:?} assignment");
            }
        }
        result.iter().map(|(m, l)| (m.clone(), l.len())).collect()
    }

    /// No member holding a partition has two or more partitions than another member that could take it.
    fn check_locally_balanced(members: &[MemberSubscription], result: &BTreeMap<String, Vec<TopicPartition>>) {
        for (holder, list) in result {
            for tp in list {
                for other in members.iter().filter(|m| m.topics.contains(&tp.topic)) {
                    let (a, b) = (list.len(), result[&other.member_id].len());
                    assert!(
                        a <= b + 1,
                        "{holder} ({a}) could give {tp:?} to {} ({b})",
                        other.member_id
                    );
                }
            }
        }
    }

    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: u64) -> u64 {
            if n == 0 { 0 } else { self.next() % n }
        }
    }

    const TOPICS: [&str; 5] = ["a", "b", "c", "d", "e"];

    /// A random scenario: members (sorted ids), partition counts, and some previous ownership including garbage.
    fn scenario(rng: &mut Lcg, uniform: bool) -> (Vec<MemberSubscription>, BTreeMap<String, u32>) {
        let num_topics = 1 + rng.below(4) as usize;
        let partitions: BTreeMap<String, u32> = TOPICS
            .iter()
            .take(num_topics)
            .map(|t| (t.to_string(), rng.below(25) as u32))
            .collect();
        let num_members = rng.below(9) as usize;
        let common: Vec<String> = TOPICS
            .iter()
            .take(num_topics)
            .filter(|_| rng.below(4) != 0)
            .map(|t| t.to_string())
            .collect();
        let mut members: Vec<MemberSubscription> = (0..num_members)
            .map(|i| {
                let topics = if uniform {
                    common.clone()
                } else {
                    TOPICS
                        .iter()
                        .take(num_topics + 1)
                        .filter(|_| rng.below(2) == 0)
                        .map(|t| t.to_string())
                        .collect()
                };
                let owned = (0..rng.below(12))
                    .map(|_| {
                        let topic = TOPICS[rng.below(num_topics as u64 + 1) as usize];
                        TopicPartition::new(topic, rng.below(30) as u32)
                    })
                    .collect();
                MemberSubscription {
                    member_id: format!("m{i:02}"),
                    topics,
                    owned,
                }
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        (members, partitions)
    }

    fn all() -> [&'static dyn Assignor; 3] {
        [&RangeAssignor, &RoundRobinAssignor, &StickyAssignor]
    }

    #[test]
    fn names() {
        assert_eq!(RangeAssignor.name(), "range");
        assert_eq!(RoundRobinAssignor.name(), "roundrobin");
        assert_eq!(StickyAssignor.name(), "sticky");
    }

    #[test]
    fn three_members_one_three_partition_topic() {
        let members = [member("m1", &["t"]), member("m2", &["t"]), member("m3", &["t"])];
        let partitions = parts(&[("t", 3)]);
        let want = expect(&[("m1", &[("t", 0)]), ("m2", &[("t", 1)]), ("m3", &[("t", 2)])]);
        for a in all() {
            assert_eq!(a.assign(&members, &partitions), want, "{}", a.name());
        }
    }

    #[test]
    fn two_members_one_five_partition_topic() {
        let members = [member("m1", &["t"]), member("m2", &["t"])];
        let partitions = parts(&[("t", 5)]);
        assert_eq!(
            RangeAssignor.assign(&members, &partitions),
            expect(&[("m1", &[("t", 0), ("t", 1), ("t", 2)]), ("m2", &[("t", 3), ("t", 4)])])
        );
        let round_robin = expect(&[("m1", &[("t", 0), ("t", 2), ("t", 4)]), ("m2", &[("t", 1), ("t", 3)])]);
        assert_eq!(RoundRobinAssignor.assign(&members, &partitions), round_robin);
        assert_eq!(StickyAssignor.assign(&members, &partitions), round_robin);
    }

    #[test]
    fn seven_partitions_three_members() {
        let members = [member("m1", &["t"]), member("m2", &["t"]), member("m3", &["t"])];
        let partitions = parts(&[("t", 7)]);
        assert_eq!(
            RangeAssignor.assign(&members, &partitions),
            expect(&[
                ("m1", &[("t", 0), ("t", 1), ("t", 2)]),
                ("m2", &[("t", 3), ("t", 4)]),
                ("m3", &[("t", 5), ("t", 6)]),
            ])
        );
        let round_robin = expect(&[
            ("m1", &[("t", 0), ("t", 3), ("t", 6)]),
            ("m2", &[("t", 1), ("t", 4)]),
            ("m3", &[("t", 2), ("t", 5)]),
        ]);
        assert_eq!(RoundRobinAssignor.assign(&members, &partitions), round_robin);
        let sticky = StickyAssignor.assign(&members, &partitions);
        assert_eq!(sticky, round_robin);

        // The module docs' second table: m3 leaves.
        let two = with_owned(&members[..2], &sticky);
        assert_eq!(
            StickyAssignor.assign(&two, &partitions),
            expect(&[
                ("m1", &[("t", 0), ("t", 3), ("t", 5), ("t", 6)]),
                ("m2", &[("t", 1), ("t", 2), ("t", 4)])
            ])
        );
        assert_eq!(
            RangeAssignor.assign(&two, &partitions),
            expect(&[
                ("m1", &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
                ("m2", &[("t", 4), ("t", 5), ("t", 6)])
            ])
        );
        assert_eq!(
            RoundRobinAssignor.assign(&two, &partitions),
            expect(&[
                ("m1", &[("t", 0), ("t", 2), ("t", 4), ("t", 6)]),
                ("m2", &[("t", 1), ("t", 3), ("t", 5)])
            ])
        );
    }

    #[test]
    fn three_members_two_topics() {
        let members = [
            member("m1", &["a", "b"]),
            member("m2", &["a", "b"]),
            member("m3", &["a", "b"]),
        ];
        let partitions = parts(&[("a", 3), ("b", 4)]);
        assert_eq!(
            RangeAssignor.assign(&members, &partitions),
            expect(&[
                ("m1", &[("a", 0), ("b", 0), ("b", 1)]),
                ("m2", &[("a", 1), ("b", 2)]),
                ("m3", &[("a", 2), ("b", 3)]),
            ])
        );
        let round_robin = expect(&[
            ("m1", &[("a", 0), ("b", 0), ("b", 3)]),
            ("m2", &[("a", 1), ("b", 1)]),
            ("m3", &[("a", 2), ("b", 2)]),
        ]);
        assert_eq!(RoundRobinAssignor.assign(&members, &partitions), round_robin);
        assert_eq!(StickyAssignor.assign(&members, &partitions), round_robin);
    }

    #[test]
    fn different_subscriptions() {
        let members = [member("m1", &["a"]), member("m2", &["a", "b"])];
        let partitions = parts(&[("a", 3), ("b", 2)]);
        assert_eq!(
            RangeAssignor.assign(&members, &partitions),
            expect(&[("m1", &[("a", 0), ("a", 1)]), ("m2", &[("a", 2), ("b", 0), ("b", 1)])])
        );
        assert_eq!(
            RoundRobinAssignor.assign(&members, &partitions),
            expect(&[("m1", &[("a", 0), ("a", 2)]), ("m2", &[("a", 1), ("b", 0), ("b", 1)])])
        );
        let sticky = StickyAssignor.assign(&members, &partitions);
        let counts = check_valid(&members, &partitions, &sticky);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [3, 2]);
        check_locally_balanced(&members, &sticky);
    }

    #[test]
    fn round_robin_cursor_carries_across_topics() {
        // Kafka's circular iterator keeps its position from one topic to the next.
        let members = [
            member("m1", &["a", "b"]),
            member("m2", &["b"]),
            member("m3", &["a", "b"]),
        ];
        let partitions = parts(&[("a", 2), ("b", 3)]);
        assert_eq!(
            RoundRobinAssignor.assign(&members, &partitions),
            expect(&[
                ("m1", &[("a", 0), ("b", 0)]),
                ("m2", &[("b", 1)]),
                ("m3", &[("a", 1), ("b", 2)])
            ])
        );
    }

    #[test]
    fn more_members_than_partitions() {
        let members = [
            member("m1", &["t"]),
            member("m2", &["t"]),
            member("m3", &["t"]),
            member("m4", &["t"]),
        ];
        let partitions = parts(&[("t", 2)]);
        let want = expect(&[("m1", &[("t", 0)]), ("m2", &[("t", 1)]), ("m3", &[]), ("m4", &[])]);
        for a in all() {
            assert_eq!(a.assign(&members, &partitions), want, "{}", a.name());
        }
    }

    #[test]
    fn edge_cases() {
        let partitions = parts(&[("a", 2), ("empty", 0), ("orphan", 3)]);
        for a in all() {
            assert!(a.assign(&[], &partitions).is_empty(), "{}", a.name());
            assert!(a.assign(&[], &BTreeMap::new()).is_empty(), "{}", a.name());

            let members = [
                member("m1", &[]),
                member("m2", &["a", "empty", "missing"]),
                member("m3", &[]),
            ];
            let want = expect(&[("m1", &[]), ("m2", &[("a", 0), ("a", 1)]), ("m3", &[])]);
            assert_eq!(a.assign(&members, &partitions), want, "{}", a.name());

            let idle = [member("m1", &[]), member("m2", &["missing"])];
            assert_eq!(
                a.assign(&idle, &partitions),
                expect(&[("m1", &[]), ("m2", &[])]),
                "{}",
                a.name()
            );
            assert_eq!(
                a.assign(&idle, &BTreeMap::new()),
                expect(&[("m1", &[]), ("m2", &[])]),
                "{}",
                a.name()
            );

            // Unsorted input and a repeated member id are tolerated: the first occurrence wins.
            let messy = [member("m2", &["a"]), member("m1", &["a"]), member("m2", &["orphan"])];
            let want = expect(&[("m1", &[("a", 0)]), ("m2", &[("a", 1)])]);
            assert_eq!(a.assign(&messy, &partitions), want, "{}", a.name());
        }
    }

    #[test]
    fn range_and_round_robin_random_scenarios_are_valid() {
        let mut rng = Lcg(7);
        for i in 0..200 {
            let (members, partitions) = scenario(&mut rng, i % 2 == 0);
            for a in [&RangeAssignor as &dyn Assignor, &RoundRobinAssignor] {
                let result = a.assign(&members, &partitions);
                check_valid(&members, &partitions, &result);
                assert_eq!(result, a.assign(&members, &partitions));
            }
        }
    }

    #[test]
    fn sticky_balanced_with_uniform_subscriptions() {
        let mut rng = Lcg(42);
        for _ in 0..300 {
            let (members, partitions) = scenario(&mut rng, true);
            let result = StickyAssignor.assign(&members, &partitions);
            let counts = check_valid(&members, &partitions, &result);
            let assignable = members.first().map_or(0, |m| {
                partitions
                    .iter()
                    .filter(|(t, _)| m.topics.contains(t))
                    .map(|(_, &n)| n as usize)
                    .sum::<usize>()
            });
            if assignable > 0 {
                let max = counts.values().max().copied().unwrap_or(0);
                let min = counts.values().min().copied().unwrap_or(0);
                assert!(max - min <= 1, "unbalanced {counts:?}");
            }
            // With nobody owning anything, sticky deals exactly like round-robin.
            let fresh: Vec<MemberSubscription> = members
                .iter()
                .map(|m| MemberSubscription {
                    owned: Vec::new(),
                    ..m.clone()
                })
                .collect();
            assert_eq!(
                StickyAssignor.assign(&fresh, &partitions),
                RoundRobinAssignor.assign(&fresh, &partitions)
            );
        }
    }

    #[test]
    fn sticky_balanced_with_different_subscriptions() {
        let mut rng = Lcg(4242);
        for _ in 0..300 {
            let (members, partitions) = scenario(&mut rng, false);
            let result = StickyAssignor.assign(&members, &partitions);
            check_valid(&members, &partitions, &result);
            check_locally_balanced(&members, &result);
        }
    }

    #[test]
    fn sticky_member_leaves() {
        let members = [member("m1", &["t"]), member("m2", &["t"]), member("m3", &["t"])];
        let partitions = parts(&[("t", 12)]);
        let first = StickyAssignor.assign(&members, &partitions);
        assert!(first.values().all(|l| l.len() == 4));

        for leaving in 0..3 {
            let stay: Vec<MemberSubscription> = with_owned(&members, &first)
                .into_iter()
                .enumerate()
                .filter(|&(i, _)| i != leaving)
                .map(|(_, m)| m)
                .collect();
            let second = StickyAssignor.assign(&stay, &partitions);
            check_valid(&stay, &partitions, &second);
            assert!(second.values().all(|l| l.len() == 6));
            for m in &stay {
                assert!(
                    m.owned.iter().all(|tp| second[&m.member_id].contains(tp)),
                    "{} lost a partition",
                    m.member_id
                );
            }
            assert_eq!(moved(&first, &second), 4);
        }
    }

    #[test]
    fn sticky_member_joins() {
        let mut members = vec![
            member("m1", &["t"]),
            member("m2", &["t"]),
            member("m3", &["t"]),
            member("m4", &["t"]),
        ];
        let partitions = parts(&[("t", 12)]);
        let first = StickyAssignor.assign(&members, &partitions);
        assert!(first.values().all(|l| l.len() == 3));

        for new_id in ["m0", "m9", "m25"] {
            let mut grown = with_owned(&members, &first);
            grown.push(member(new_id, &["t"]));
            grown.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            let second = StickyAssignor.assign(&grown, &partitions);
            check_valid(&grown, &partitions, &second);
            let taken = second[new_id].len();
            assert!((2..=3).contains(&taken), "new member took {taken}");
            assert_eq!(moved(&first, &second), taken);
            for m in &grown {
                assert!(
                    second[&m.member_id]
                        .iter()
                        .all(|tp| m.owned.contains(tp) || m.member_id == new_id)
                );
            }
        }
        members.push(member("m5", &["t"]));
        assert_eq!(StickyAssignor.assign(&members, &partitions).len(), 5);
    }

    #[test]
    fn sticky_rebalances_through_a_chain() {
        // m1 can only take `a`, m3 only `b`; evening 1/2/3 out needs m2 to pass an `a` to m1 and take a `b` from m3.
        let partitions = parts(&[("a", 2), ("b", 4)]);
        let members = [
            MemberSubscription {
                owned: tps(&[("a", 0)]),
                ..member("m1", &["a"])
            },
            MemberSubscription {
                owned: tps(&[("a", 1), ("b", 0)]),
                ..member("m2", &["a", "b"])
            },
            MemberSubscription {
                owned: tps(&[("b", 1), ("b", 2), ("b", 3)]),
                ..member("m3", &["b"])
            },
        ];
        let result = StickyAssignor.assign(&members, &partitions);
        check_valid(&members, &partitions, &result);
        assert!(result.values().all(|l| l.len() == 2), "{result:?}");
        let before: BTreeMap<String, Vec<TopicPartition>> =
            members.iter().map(|m| (m.member_id.clone(), m.owned.clone())).collect();
        assert_eq!(moved(&before, &result), 2);
    }

    #[test]
    fn sticky_ignores_invalid_previous_ownership() {
        let partitions = parts(&[("a", 4), ("b", 2)]);
        let members = [
            MemberSubscription {
                owned: tps(&[("a", 0), ("a", 1), ("a", 9), ("gone", 0), ("b", 0)]),
                ..member("m1", &["a"])
            },
            MemberSubscription {
                owned: tps(&[("a", 1), ("a", 2), ("a", 2)]),
                ..member("m2", &["a"])
            },
        ];
        let result = StickyAssignor.assign(&members, &partitions);
        // a-1 is claimed by both; m1 (first by id) keeps it. b is unsubscribed, a-9 and gone-0 do not exist.
        assert_eq!(
            result,
            expect(&[("m1", &[("a", 0), ("a", 1)]), ("m2", &[("a", 2), ("a", 3)])])
        );
    }

    #[test]
    fn sticky_property_every_partition_once() {
        let mut rng = Lcg(2024);
        for i in 0..200 {
            let (members, partitions) = scenario(&mut rng, i % 3 == 0);
            let result = StickyAssignor.assign(&members, &partitions);
            check_valid(&members, &partitions, &result);
            assert_eq!(result, StickyAssignor.assign(&members, &partitions), "deterministic");
            // Feeding the result back in as the previous assignment changes nothing.
            let again = StickyAssignor.assign(&with_owned(&members, &result), &partitions);
            assert_eq!(again, result, "not a fixed point");
        }
    }

    #[test]
    fn sticky_large_group() {
        let partitions: BTreeMap<String, u32> = (0..10).map(|t| (format!("topic-{t}"), 1000)).collect();
        let topics: Vec<&str> = partitions.keys().map(String::as_str).collect();
        let members: Vec<MemberSubscription> = (0..100).map(|i| member(&format!("member-{i:03}"), &topics)).collect();
        let first = StickyAssignor.assign(&members, &partitions);
        let counts = check_valid(&members, &partitions, &first);
        assert!(counts.values().all(|&c| c == 100));

        let stay: Vec<MemberSubscription> = with_owned(&members, &first).into_iter().skip(1).collect();
        let second = StickyAssignor.assign(&stay, &partitions);
        let counts = check_valid(&stay, &partitions, &second);
        assert!(counts.values().all(|&c| c == 101 || c == 102));
        assert_eq!(moved(&first, &second), 100);

        // Different subscriptions: half the members skip one topic.
        let mixed: Vec<MemberSubscription> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i % 2 == 0 {
                    member(&m.member_id, &topics[1..])
                } else {
                    m.clone()
                }
            })
            .collect();
        let third = StickyAssignor.assign(&mixed, &partitions);
        check_valid(&mixed, &partitions, &third);
        let counts: Vec<usize> = third.values().map(Vec::len).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    }
}
