//! The in-process group coordinator: membership, generations, eviction, partition
//! ownership hand-over.
//!
//! # Rebalance protocol (incremental, as Kafka's cooperative protocol)
//! A group has a *target* assignment, recomputed with a new generation number whenever a
//! member joins, leaves, is evicted or changes its topics, or a subscribed topic gains or
//! loses partitions. It
//! also records who *owns* each partition right now. Ownership moves in two steps, so that
//! a partition never has two owners and the old owner can commit before letting go:
//!
//! 1. At its next `poll` (which the coordinator wakes), a member that owns partitions the
//!    new target gives to someone else runs `on_partitions_revoked` for exactly those — it
//!    still owns them, so its commits there succeed — and then releases them.
//! 2. A member whose target holds partitions nobody owns takes them, and runs
//!    `on_partitions_assigned` for exactly those. Partitions still held by their old owner
//!    are taken at a later poll, once released (the release wakes the new owner).
//!
//! Partitions that stay with their member are never revoked, so members unaffected by a
//! rebalance keep consuming through it. The target is computed by the assignor of the
//! group's oldest member (Kafka's group leader). A partition that no longer exists (its
//! topic deleted) loses its owner at the rebalance: its holder revokes it at its next poll,
//! and a topic created again under the name is claimed afresh.
//!
//! A member leaving (unsubscribe, close, drop) frees its partitions at once; the consumer
//! ran `on_partitions_revoked` for them before.
//!
//! # Group deletion
//! `delete_group` removes a group only if it has no members, under the group's lock, and
//! marks the state removed; every use of a group by name goes through
//! [`Coordinator::with_live`], which never uses a removed group, so a joining member never
//! ends up in a group the coordinator has forgotten. A group whose last member left and
//! that has no committed offsets is forgotten the same way
//! ([`Coordinator::forget_if_unused`]), as Kafka drops such a group: nothing of it is
//! worth keeping, and a process making a group per session would keep one each.
//!
//! # Liveness
//! A member is alive while it is inside `poll` and for `max_poll_interval` after a `poll`
//! returns. A rebalance listener callback that `poll` runs counts as time out of poll (from
//! its start, [`Group::pause_poll`] to [`Group::resume_poll`]), as Kafka bounds a member's
//! callbacks by its rebalance timeout (`max.poll.interval.ms`): a member stuck in one is
//! evicted. The check runs whenever any member of the group polls, and a member blocked in
//! `poll` wakes at the next deadline of its peers to run it; an evicted member's partitions
//! are free at once, and its later commits fail with [`Error::CommitFailed`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::record::now_ms;

use parking_lot::Mutex;

use super::assignor::{Assignor, MemberSubscription};
use crate::error::{Error, Result};
use crate::offsets::{CommitCheck, OffsetAndMetadata, OffsetStore};
use crate::storage::notify::Signal;
use crate::topic::TopicPartition;

/// Partition counts of topics, as the broker knows them now (`None`: no such topic).
pub(crate) type TopicCounts<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// All groups of one broker.
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    groups: Mutex<BTreeMap<String, Arc<Group>>>,
    next_member: AtomicU64,
}

/// One consumer group's live state.
#[derive(Debug)]
pub(crate) struct Group {
    pub name: String,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    generation: u64,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    owners: HashMap<TopicPartition, String>,
    /// When the last rebalance was triggered and whether it has settled.
    rebalancing_since: Option<Instant>,
    last_rebalance: Option<Duration>,
    /// The group was deleted (`delete_if_empty`): a handle to it is stale, and nothing may
    /// join it or commit through it — [`Coordinator::with_live`] looks the name up again.
    removed: bool,
    /// When (ms since the epoch) its last member left or was evicted; `None` while it has
    /// members, and for a group nobody joined in this process. Offsets retention counts
    /// from here (as Kafka's, from when the group became empty).
    emptied_at: Option<i64>,
}

#[derive(Debug)]
struct Member {
    /// Join order: the oldest member (lowest) is the leader whose assignor is used.
    seq: u64,
    client_id: String,
    topics: Vec<String>,
    assignor: Arc<dyn Assignor>,
    signal: Arc<Signal>,
    max_poll_interval: Duration,
    last_poll: Instant,
    in_poll: bool,
}

impl Member {
    /// When a member whose poll ended at `since` passes its `max_poll_interval`; `None`
    /// if that is past what an `Instant` holds (`Duration::MAX`: never evicted).
    fn deadline(&self, since: Instant) -> Option<Instant> {
        since.checked_add(self.max_poll_interval)
    }
}

/// What a consumer brings when it joins a group.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub group: String,
    pub client_id: String,
    /// Sorted, without duplicates.
    pub topics: Vec<String>,
    pub assignor: Arc<dyn Assignor>,
    /// Raised when the member must act (a rebalance, a released partition).
    pub signal: Arc<Signal>,
    pub max_poll_interval: Duration,
}

/// A consumer's membership of a group.
#[derive(Debug, Clone)]
pub(crate) struct MemberHandle {
    pub group: Arc<Group>,
    pub member_id: String,
}

/// What a member must do at this poll, from [`Group::begin_poll`].
#[derive(Debug)]
pub(crate) enum PollStep {
    /// The member was evicted (or its group deleted): it must drop its partitions.
    Evicted,
    /// A member in good standing.
    Member {
        generation: u64,
        /// Partitions it owns that the target gives away: revoke, then release them.
        revoke: Vec<TopicPartition>,
        /// Whether the target holds partitions it does not own yet.
        to_claim: bool,
        /// When a peer's poll deadline passes (wake then to run the eviction check).
        next_check: Option<Instant>,
    },
}

/// One member's row in a group description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The consumer's `client_id`.
    pub client_id: String,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Partitions it owns now.
    pub owned: Vec<TopicPartition>,
    /// Partitions the current generation's assignment gives it.
    pub target: Vec<TopicPartition>,
}

/// The live part of a group's description (see [`Broker::describe_group`](crate::Broker::describe_group)).
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveGroup {
    pub generation: u64,
    pub assignor: Option<String>,
    pub members: Vec<MemberDescription>,
    pub owners: HashMap<TopicPartition, String>,
    pub rebalancing: bool,
    pub last_rebalance: Option<Duration>,
    pub topics: BTreeSet<String>,
}

impl Coordinator {
    /// The group `name`, created empty if it does not exist. The handle may be stale by the
    /// time its lock is taken: use it through [`with_live`](Self::with_live).
    fn group(&self, name: &str) -> Arc<Group> {
        let mut groups = self.groups.lock();
        Arc::clone(groups.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Group {
                name: name.to_owned(),
                state: Mutex::new(GroupState::default()),
            })
        }))
    }

    /// The group, if it has live state.
    pub fn existing(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.lock().get(name).cloned()
    }

    /// Names of groups with at least one member.
    pub fn active_groups(&self) -> Vec<String> {
        self.groups
            .lock()
            .iter()
            .filter(|(_, g)| !g.state.lock().members.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Adds a member and rebalances.
    pub fn join(&self, request: JoinRequest, counts: TopicCounts<'_>) -> MemberHandle {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let member_id = format!("{}-{n:08}", request.client_id);
        let member = Member {
            seq: n,
            client_id: request.client_id,
            topics: request.topics,
            assignor: request.assignor,
            signal: request.signal,
            max_poll_interval: request.max_poll_interval,
            last_poll: Instant::now(),
            in_poll: false,
        };
        self.with_live(&request.group, |group, st| {
            st.members.insert(member_id.clone(), member);
            st.rebalance(&group.name, counts);
            MemberHandle {
                group: Arc::clone(group),
                member_id,
            }
        })
    }

    /// Runs `f` under the lock of the live group `name` (created empty if needed).
    fn with_live<T>(&self, name: &str, f: impl FnOnce(&Arc<Group>, &mut GroupState) -> T) -> T {
        self.with_live_from(name, self.group(name), f)
    }

    /// [`with_live`](Self::with_live), starting from a handle looked up earlier. Between
    /// the lookup and the lock, `delete_if_empty` may have removed the group: such a stale
    /// group is never used (a member joining it would be in a group nobody else can see,
    /// and a second group of the name would hand out the same partitions); the name is
    /// looked up again.
    fn with_live_from<T>(
        &self,
        name: &str,
        mut group: Arc<Group>,
        f: impl FnOnce(&Arc<Group>, &mut GroupState) -> T,
    ) -> T {
        loop {
            {
                let mut st = group.state.lock();
                if !st.removed {
                    return f(&group, &mut st);
                }
            }
            self.forget(name, &group);
            group = self.group(name);
        }
    }

    /// Drops `group` from the map if it is still the entry for `name`.
    fn forget(&self, name: &str, group: &Arc<Group>) {
        let mut groups = self.groups.lock();
        if groups.get(name).is_some_and(|g| Arc::ptr_eq(g, group)) {
            groups.remove(name);
        }
    }

    /// Forgets `group` if it has no members and `has_offsets` says it has no committed
    /// offsets (asked under the group's lock, which standalone commits and admin changes to
    /// its offsets take too): nothing of it is worth keeping then — `emptied_at` serves only
    /// offsets retention — and an application making a group per session would otherwise
    /// grow the map by one entry each. A member joining later makes a fresh group.
    pub fn forget_if_unused(&self, group: &Arc<Group>, has_offsets: impl FnOnce() -> bool) {
        let unused = {
            let mut st = group.state.lock();
            let unused = !st.removed && st.members.is_empty() && !has_offsets();
            if unused {
                st.removed = true;
            }
            unused
        };
        if unused {
            self.forget(&group.name, group);
        }
    }

    /// Rebalances every group subscribed to `topic` (its partition count changed, or it was
    /// created or deleted).
    pub fn topic_changed(&self, topic: &str, counts: TopicCounts<'_>) {
        let groups: Vec<Arc<Group>> = self.groups.lock().values().cloned().collect();
        for g in groups {
            let mut st = g.state.lock();
            if st.members.values().any(|m| m.topics.iter().any(|t| t == topic)) {
                st.rebalance(&g.name, counts);
            }
        }
    }

    /// Deletes group `name` if it has no members (members past their poll deadline are
    /// evicted first): runs `f` (which deletes its committed offsets), marks the live state
    /// removed and forgets it, all under the group's lock, so no member can join in between
    /// — one that looked the group up earlier finds it removed once it has the lock, and
    /// joins a fresh group of the name.
    ///
    /// # Errors
    /// [`Error::GroupNotEmpty`] (`f` does not run then); the error of `f` (the group stays).
    pub fn delete_if_empty<T>(&self, name: &str, counts: TopicCounts<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (group, out) = self.with_live(name, |group, st| {
            st.evict_expired(name, Instant::now(), counts);
            st.check_empty(name)?;
            let out = f()?;
            st.removed = true;
            Ok((Arc::clone(group), out))
        })?;
        self.forget(name, &group);
        Ok(out)
    }

    /// Deletes group `name` as [`delete_if_empty`](Self::delete_if_empty) does if it has no
    /// members and `idle` says it has been idle long enough, given when its last member
    /// left (`None` if none did in this process); `delete` deletes its committed offsets
    /// and returns how many. Returns 0 when the group stays.
    ///
    /// # Errors
    /// The error of `delete` (the group stays).
    pub fn expire_if_idle(
        &self,
        name: &str,
        counts: TopicCounts<'_>,
        idle: impl FnOnce(Option<i64>) -> bool,
        delete: impl FnOnce() -> Result<usize>,
    ) -> Result<usize> {
        let (group, deleted) = self.with_live(name, |group, st| {
            st.evict_expired(name, Instant::now(), counts);
            if !st.members.is_empty() {
                return Ok((None, 0));
            }
            let deleted = if idle(st.emptied_at) {
                delete()?
            } else if st.emptied_at.is_none() && st.generation == 0 {
                // Made by this lookup (nobody joined it in this process): not kept, so that
                // checking every group with offsets does not keep a live entry for each.
                0
            } else {
                // Emptied here: kept, to remember when.
                return Ok((None, 0));
            };
            st.removed = true;
            Ok((Some(Arc::clone(group)), deleted))
        })?;
        if let Some(group) = group {
            self.forget(name, &group);
        }
        Ok(deleted)
    }

    /// Runs `f` under the lock of group `name` if it has no members (members past their
    /// poll deadline are evicted first), for admin changes to its offsets, which must not
    /// race a joining member.
    ///
    /// # Errors
    /// [`Error::GroupNotEmpty`]; the error of `f`.
    pub fn while_empty<T>(&self, name: &str, counts: TopicCounts<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.with_live(name, |_, st| {
            st.evict_expired(name, Instant::now(), counts);
            st.check_empty(name)?;
            f()
        })
    }

    /// Commits `offsets` for a consumer outside the group (`assign`), which may commit only
    /// while the group has no members (members past their poll deadline are evicted first);
    /// the check and the append happen under the lock of the live group. Returns the offsets
    /// log end to wait on for durability.
    ///
    /// # Errors
    /// As [`Group::commit_fenced`].
    pub fn commit_standalone(
        &self,
        name: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        store: &OffsetStore,
        valid: &CommitCheck<'_>,
        counts: TopicCounts<'_>,
    ) -> Result<u64> {
        self.with_live(name, |_, st| {
            st.evict_expired(name, Instant::now(), counts);
            st.commit_fenced(name, None, offsets, store, valid)
        })
    }
}

impl Group {
    /// Heartbeat at the start of a poll: marks the member as polling, evicts peers past
    /// their deadline, and says what the member must do.
    pub fn begin_poll(&self, member_id: &str, counts: TopicCounts<'_>) -> PollStep {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.evict_expired(&self.name, now, counts);
        let Some(member) = st.members.get_mut(member_id) else {
            return PollStep::Evicted;
        };
        member.in_poll = true;
        member.last_poll = now;
        let target = st.target.get(member_id);
        let revoke: Vec<TopicPartition> = st
            .owners
            .iter()
            .filter(|(tp, owner)| owner.as_str() == member_id && !target.is_some_and(|t| t.contains(*tp)))
            .map(|(tp, _)| tp.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let to_claim = target.is_some_and(|t| {
            t.iter()
                .any(|tp| st.owners.get(tp).map(String::as_str) != Some(member_id))
        });
        PollStep::Member {
            generation: st.generation,
            revoke,
            to_claim,
            next_check: st.next_deadline(member_id, now),
        }
    }

    /// Releases `partitions` the member owns, waking the members they go to.
    pub fn release(&self, member_id: &str, partitions: &[TopicPartition]) {
        let mut st = self.state.lock();
        for tp in partitions {
            if st.owners.get(tp).map(String::as_str) == Some(member_id) {
                st.owners.remove(tp);
            }
        }
        st.wake_all();
        st.note_settled();
    }

    /// Takes the partitions of the member's target that nobody owns. Returns them, and
    /// whether the member now owns its whole target.
    pub fn claim(&self, member_id: &str) -> (Vec<TopicPartition>, bool) {
        let mut st = self.state.lock();
        let Some(target) = st.target.get(member_id).cloned() else {
            return (Vec::new(), true);
        };
        if !st.members.contains_key(member_id) {
            return (Vec::new(), true);
        }
        let mut claimed = Vec::new();
        let mut complete = true;
        for tp in target {
            match st.owners.get(&tp) {
                None => {
                    st.owners.insert(tp.clone(), member_id.to_owned());
                    claimed.push(tp);
                }
                Some(owner) if owner == member_id => {}
                Some(_) => complete = false,
            }
        }
        st.note_settled();
        (claimed, complete)
    }

    /// Whether `member_id` is still a member (not evicted, not left).
    pub fn is_member(&self, member_id: &str) -> bool {
        self.state.lock().members.contains_key(member_id)
    }

    /// A rebalance callback starts inside the member's poll: if the member is polling, it
    /// counts as out of poll from now on (its `max_poll_interval` starts now) until
    /// [`resume_poll`](Self::resume_poll). Returns whether it was polling.
    pub fn pause_poll(&self, member_id: &str) -> bool {
        let mut st = self.state.lock();
        match st.members.get_mut(member_id) {
            Some(m) if m.in_poll => {
                m.in_poll = false;
                m.last_poll = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// The callback [`pause_poll`](Self::pause_poll) was called for has returned: members
    /// past their poll deadline are evicted first (this one too, if the callback outlasted
    /// its `max_poll_interval`), then the member is polling again. Returns whether it is
    /// still a member.
    pub fn resume_poll(&self, member_id: &str, counts: TopicCounts<'_>) -> bool {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.evict_expired(&self.name, now, counts);
        let Some(m) = st.members.get_mut(member_id) else {
            return false;
        };
        m.in_poll = true;
        m.last_poll = now;
        true
    }

    /// Marks the end of a poll: the member's `max_poll_interval` starts now.
    pub fn end_poll(&self, member_id: &str) {
        let mut st = self.state.lock();
        if let Some(m) = st.members.get_mut(member_id) {
            m.in_poll = false;
            m.last_poll = Instant::now();
        }
    }

    /// Changes a member's topics (a consumer subscribing again): a new generation if they
    /// differ, nothing if not; partitions of topics it dropped are revoked at its next poll.
    /// Returns whether it is still a member (else nothing changed).
    pub fn resubscribe(&self, member_id: &str, topics: &[String], counts: TopicCounts<'_>) -> bool {
        let mut st = self.state.lock();
        let Some(member) = st.members.get_mut(member_id) else {
            return false;
        };
        if member.topics != topics {
            member.topics = topics.to_vec();
            st.rebalance(&self.name, counts);
        }
        true
    }

    /// Removes the member (close, drop or unsubscribe): its partitions are free at once.
    pub fn leave(&self, member_id: &str, counts: TopicCounts<'_>) {
        let mut st = self.state.lock();
        if st.members.remove(member_id).is_some() {
            st.owners.retain(|_, owner| owner != member_id);
            st.rebalance(&self.name, counts);
        }
    }

    /// Commits `offsets` for member `member_id`, which must own every partition; the check
    /// and the append happen under the group's lock. Members past their poll deadline are
    /// evicted first, the committer too: as in Kafka, a member that did not poll within
    /// `max_poll_interval` has left the group, and its commit fails, whether or not another
    /// member has polled since. Returns the offsets log end to wait on for durability.
    ///
    /// # Errors
    /// [`Error::CommitFailed`]; an error of `valid` (a partition that does not exist); a
    /// write error.
    pub fn commit_fenced(
        &self,
        member_id: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        store: &OffsetStore,
        valid: &CommitCheck<'_>,
        counts: TopicCounts<'_>,
    ) -> Result<u64> {
        let mut st = self.state.lock();
        st.evict_expired(&self.name, Instant::now(), counts);
        st.commit_fenced(&self.name, Some(member_id), offsets, store, valid)
    }

    /// A snapshot of the live state (evicting expired members first).
    pub fn describe(&self, counts: TopicCounts<'_>) -> LiveGroup {
        let mut st = self.state.lock();
        st.evict_expired(&self.name, Instant::now(), counts);
        let members = st
            .members
            .iter()
            .map(|(id, m)| {
                let mut owned: Vec<TopicPartition> = st
                    .owners
                    .iter()
                    .filter(|(_, o)| *o == id)
                    .map(|(tp, _)| tp.clone())
                    .collect();
                owned.sort();
                MemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    topics: m.topics.clone(),
                    owned,
                    target: st
                        .target
                        .get(id)
                        .map(|t| t.iter().cloned().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        LiveGroup {
            generation: st.generation,
            assignor: st
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.assignor.name().to_owned()),
            members,
            owners: st.owners.clone(),
            rebalancing: st.rebalancing_since.is_some(),
            last_rebalance: st.last_rebalance,
            topics: st.members.values().flat_map(|m| m.topics.iter().cloned()).collect(),
        }
    }
}

impl GroupState {
    /// Commits `offsets` if the committer may: a member (`Some`) must own every partition,
    /// a standalone consumer (`None`) needs a group without members.
    fn commit_fenced(
        &self,
        group: &str,
        member_id: Option<&str>,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        store: &OffsetStore,
        valid: &CommitCheck<'_>,
    ) -> Result<u64> {
        match member_id {
            Some(member_id) => self.check_owner(group, member_id, offsets.iter().map(|(tp, _)| tp))?,
            None if !self.members.is_empty() => {
                return Err(Error::CommitFailed {
                    group: group.to_owned(),
                    reason: format!(
                        "the group has {} subscribed member(s); a consumer using assign() may commit only to a group without members",
                        self.members.len()
                    ),
                });
            }
            None => {}
        }
        store.commit(group, offsets, false, valid)
    }

    /// `Err(GroupNotEmpty)` if the group has members.
    fn check_empty(&self, group: &str) -> Result<()> {
        if self.members.is_empty() {
            return Ok(());
        }
        Err(Error::GroupNotEmpty {
            group: group.to_owned(),
            members: self.members.len(),
        })
    }

    /// Checks that `member_id` is a member that owns every partition in `partitions`.
    fn check_owner<'a>(
        &self,
        group: &str,
        member_id: &str,
        partitions: impl Iterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        let fail = |reason: String| Error::CommitFailed {
            group: group.to_owned(),
            reason,
        };
        if !self.members.contains_key(member_id) {
            return Err(fail(format!(
                "member {member_id} is no longer in the group (evicted or left); its partitions may have moved"
            )));
        }
        for tp in partitions {
            match self.owners.get(tp) {
                Some(owner) if owner == member_id => {}
                Some(owner) => {
                    return Err(fail(format!(
                        "{tp} is owned by {owner} since generation {}",
                        self.generation
                    )));
                }
                None => return Err(fail(format!("{tp} is not owned by member {member_id}"))),
            }
        }
        Ok(())
    }

    /// New generation: recomputes the target with the leader's assignor and wakes everyone.
    fn rebalance(&mut self, group: &str, counts: TopicCounts<'_>) {
        self.generation += 1;
        let Some(leader) = self.members.values().min_by_key(|m| m.seq) else {
            self.emptied_at.get_or_insert_with(now_ms);
            self.target.clear();
            self.owners.clear();
            self.rebalancing_since = None;
            return;
        };
        self.emptied_at = None;
        let assignor = Arc::clone(&leader.assignor);
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| m.topics.iter()).collect();
        let partitions: BTreeMap<String, u32> = topics
            .into_iter()
            .filter_map(|t| counts(t).map(|n| (t.clone(), n)))
            .collect();
        let subscriptions: Vec<MemberSubscription> = self
            .members
            .iter()
            .map(|(id, m)| MemberSubscription {
                member_id: id.clone(),
                topics: m.topics.clone(),
                owned: self
                    .target
                    .get(id)
                    .map(|t| t.iter().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect();
        // A user's assignor runs in whichever member's thread caused the rebalance (a join, a
        // leave, a drop): its panic is caught here, as an invalid result is, so that it
        // neither reaches an unrelated member nor leaves the group with a stale target.
        let assignment = std::panic::catch_unwind(AssertUnwindSafe(|| assignor.assign(&subscriptions, &partitions)))
            .map_err(|_| "the assignor panicked".to_owned())
            .and_then(|assignment| validate(&assignment, &subscriptions, &partitions).map(|()| assignment))
            .unwrap_or_else(|reason| {
                tracing::error!(group, assignor = assignor.name(), %reason, "invalid assignment; using the range assignor");
                super::assignor::RangeAssignor.assign(&subscriptions, &partitions)
            });
        self.target = self
            .members
            .keys()
            .map(|id| {
                let parts = assignment
                    .get(id)
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default();
                (id.clone(), parts)
            })
            .collect();
        // Partitions that no longer exist (a deleted topic) lose their owner at once: the
        // holder can no longer commit them, revokes them at its next poll (it finds their
        // log deleted), and a topic created again under the name is claimed afresh —
        // never taken for the old one's partitions.
        self.owners
            .retain(|tp, _| counts(&tp.topic).is_some_and(|n| tp.partition < n));
        self.rebalancing_since = Some(Instant::now());
        tracing::debug!(
            group,
            generation = self.generation,
            members = self.members.len(),
            "rebalance"
        );
        self.note_settled();
        self.wake_all();
    }

    /// Records the rebalance's duration once every member owns exactly its target.
    fn note_settled(&mut self) {
        let Some(since) = self.rebalancing_since else { return };
        let settled = self.members.keys().all(|id| {
            let target = self.target.get(id);
            let owned = self.owners.iter().filter(|(_, o)| *o == id).count();
            target.map_or(0, BTreeSet::len) == owned
                && target.is_none_or(|t| t.iter().all(|tp| self.owners.get(tp) == Some(id)))
        });
        if settled {
            self.last_rebalance = Some(since.elapsed());
            self.rebalancing_since = None;
        }
    }

    fn wake_all(&self) {
        for m in self.members.values() {
            m.signal.notify();
        }
    }

    fn evict_expired(&mut self, group: &str, now: Instant, counts: TopicCounts<'_>) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.in_poll && m.deadline(m.last_poll).is_some_and(|d| now >= d))
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            tracing::warn!(group, member = %id, "evicting a member that did not poll within max_poll_interval");
            self.members.remove(id);
            self.owners.retain(|_, owner| owner != id);
        }
        self.rebalance(group, counts);
    }

    /// The earliest time another member could pass its poll deadline: for one inside
    /// `poll`, not before `now + max_poll_interval` (it may return from `poll` any moment),
    /// so a waiting member re-checks within one interval however its peers behave.
    fn next_deadline(&self, except: &str, now: Instant) -> Option<Instant> {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .filter_map(|(_, m)| m.deadline(if m.in_poll { now } else { m.last_poll }))
            .min()
    }
}

/// Checks an assignor's output: every partition to at most one member, only to a member
/// subscribed to its topic, only partitions that exist, and every existing partition of a
/// subscribed topic to someone.
fn validate(
    assignment: &BTreeMap<String, Vec<TopicPartition>>,
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, u32>,
) -> std::result::Result<(), String> {
    let mut seen = BTreeSet::new();
    for (member, tps) in assignment {
        let Some(sub) = members.iter().find(|m| &m.member_id == member) else {
            return Err(format!("unknown member {member}"));
        };
        for tp in tps {
            if partitions.get(&tp.topic).is_none_or(|&n| tp.partition >= n) {
                return Err(format!("{tp} does not exist"));
            }
            if !sub.topics.contains(&tp.topic) {
                return Err(format!("{tp} given to {member}, which does not subscribe to its topic"));
            }
            if !seen.insert(tp.clone()) {
                return Err(format!("{tp} given to two members"));
            }
        }
    }
    let wanted: usize = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
        .map(|(_, &n)| n as usize)
        .sum();
    if seen.len() != wanted {
        return Err(format!("{} of {wanted} partitions assigned", seen.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::assignor::RangeAssignor;

    fn request(group: &str) -> JoinRequest {
        JoinRequest {
            group: group.to_owned(),
            client_id: "c".to_owned(),
            topics: vec!["t".to_owned()],
            assignor: Arc::new(RangeAssignor),
            signal: Signal::new(),
            max_poll_interval: Duration::from_secs(300),
        }
    }

    /// The interleaving behind a `delete_group` racing a `subscribe`, made deterministic: a
    /// join looked the group up, then `delete_group` removed it before the join took its
    /// lock. The stale group must never be used — the member would sit in a group nobody
    /// else sees, and the next consumer of the name would make a second group and own the
    /// same partitions.
    #[test]
    fn a_group_removed_between_lookup_and_lock_is_never_used() {
        let coordinator = Coordinator::default();
        let counts = |_: &str| Some(1);
        let stale = coordinator.group("g");
        coordinator.delete_if_empty("g", &counts, || Ok(())).unwrap();
        // Here join would add its member.
        let used = coordinator.with_live_from("g", Arc::clone(&stale), |group, _| Arc::clone(group));
        assert!(!Arc::ptr_eq(&used, &stale), "the removed group was used");
        assert!(coordinator.existing("g").is_some_and(|g| Arc::ptr_eq(&g, &used)));

        // Joins land in the one live group: the second member sees the first.
        let a = coordinator.join(request("g"), &counts);
        let b = coordinator.join(request("g"), &counts);
        assert!(Arc::ptr_eq(&a.group, &b.group) && Arc::ptr_eq(&a.group, &used));
        assert_eq!(a.group.describe(&counts).members.len(), 2);
        // And delete refuses a group with members without running its deletion.
        let ran = std::cell::Cell::new(false);
        let refused = coordinator.delete_if_empty("g", &counts, || {
            ran.set(true);
            Ok(())
        });
        assert!(matches!(refused, Err(Error::GroupNotEmpty { members: 2, .. })));
        assert!(!ran.get(), "offsets deleted before the refusal");
    }
}
