//! The waiting room: connections that wait for a slot, grouped by client class.
//!
//! A class is a client address, or the CIDR block it falls in when one is configured with a
//! weight. Each class keeps its waiting connections in arrival order and counts its slots in
//! flight. `pop_fair` hands out the next connection from the waiting class with the lowest
//! `in_flight / weight` (ties: the class whose head has waited longest), so backlogged classes
//! hold slots in proportion to their weights, and a class alone gets every slot. With a single
//! class this is plain FIFO.
//!
//! A class lives while it has connections waiting or in flight, so the table never holds more
//! than `max + limit` classes. Owned by `sched::Dispatcher` and only touched under its lock.

use crate::balancer::stats::ClassView;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Class<T> {
    weight: u32,
    /// Slots this class holds now; changed only by `pop_fair` and `release`.
    in_flight: usize,
    served: u64,
    waiting: VecDeque<(Instant, T)>,
}

#[derive(Debug)]
pub struct WaitingRoom<T> {
    classes: HashMap<String, Class<T>>,
    /// Connections waiting, over all classes; never above `max`.
    len: usize,
    max: usize,
}

impl<T> WaitingRoom<T> {
    pub fn new(max: usize) -> WaitingRoom<T> {
        WaitingRoom { classes: HashMap::new(), len: 0, max }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Adds a connection at the back of its class. Refuses it (giving it back) when full.
    pub fn push(&mut self, key: String, weight: u32, item: T, now: Instant) -> Result<(), T> {
        if self.len >= self.max {
            return Err(item);
        }
        let class = self.classes.entry(key).or_insert_with(|| Class {
            weight,
            in_flight: 0,
            served: 0,
            waiting: VecDeque::new(),
        });
        class.weight = weight;
        class.waiting.push_back((now, item));
        self.len += 1;
        Ok(())
    }

    /// Takes the next connection by the fair rule and counts a slot for its class.
    pub fn pop_fair(&mut self) -> Option<(String, T)> {
        let key = self
            .classes
            .iter()
            .filter_map(|(k, c)| c.waiting.front().map(|(since, _)| (k, c, *since)))
            .min_by(|(_, a, sa), (_, b, sb)| {
                // in_flight / weight compared without division: a.f * b.w vs b.f * a.w.
                let share = (a.in_flight as u64 * u64::from(b.weight)).cmp(&(b.in_flight as u64 * u64::from(a.weight)));
                share.then(sa.cmp(sb))
            })
            .map(|(k, _, _)| k.clone())?;
        let class = self.classes.get_mut(&key)?;
        let (_, item) = class.waiting.pop_front()?;
        class.in_flight += 1;
        class.served += 1;
        self.len -= 1;
        Some((key, item))
    }

    /// Gives back the slot a class held; forgets the class once it is idle.
    pub fn release(&mut self, key: &str) {
        if let Some(class) = self.classes.get_mut(key) {
            class.in_flight = class.in_flight.saturating_sub(1);
            if class.in_flight == 0 && class.waiting.is_empty() {
                self.classes.remove(key);
            }
        }
    }

    /// Removes and returns every connection that has waited `timeout` or longer.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<T> {
        let mut out = Vec::new();
        for class in self.classes.values_mut() {
            while class.waiting.front().is_some_and(|(since, _)| now.duration_since(*since) >= timeout) {
                if let Some((_, item)) = class.waiting.pop_front() {
                    out.push(item);
                }
            }
        }
        self.len -= out.len();
        self.classes.retain(|_, c| c.in_flight > 0 || !c.waiting.is_empty());
        out
    }

    /// When the longest-waiting connection reaches `timeout`.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.classes.values().filter_map(|c| c.waiting.front().map(|(since, _)| *since + timeout)).min()
    }

    /// Removes the waiting item that `is_it` picks (a client that gave up), if it still waits.
    pub fn remove(&mut self, is_it: impl Fn(&T) -> bool) -> Option<T> {
        let (key, i) = self
            .classes
            .iter()
            .find_map(|(k, c)| c.waiting.iter().position(|(_, t)| is_it(t)).map(|i| (k.clone(), i)))?;
        let class = self.classes.get_mut(&key)?;
        let (_, item) = class.waiting.remove(i)?;
        self.len -= 1;
        if class.in_flight == 0 && class.waiting.is_empty() {
            self.classes.remove(&key);
        }
        Some(item)
    }

    /// Empties the room (at the end of a drain).
    pub fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        for class in self.classes.values_mut() {
            out.extend(class.waiting.drain(..).map(|(_, item)| item));
        }
        self.len = 0;
        self.classes.retain(|_, c| c.in_flight > 0);
        out
    }

    /// Applies new weights (after a reload) to the classes present.
    pub fn reweigh(&mut self, weight_of: impl Fn(&str) -> u32) {
        for (key, class) in self.classes.iter_mut() {
            class.weight = weight_of(key);
        }
    }

    pub fn views(&self) -> Vec<ClassView> {
        let mut v: Vec<ClassView> = self
            .classes
            .iter()
            .map(|(k, c)| ClassView {
                key: k.clone(),
                weight: c.weight,
                in_flight: c.in_flight,
                queued: c.waiting.len(),
                served: c.served,
            })
            .collect();
        v.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.key.cmp(&b.key)).then(Ordering::Equal));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_class_is_fifo() {
        let t0 = Instant::now();
        let mut room = WaitingRoom::new(10);
        for i in 0..3 {
            room.push("a".into(), 1, i, t0).unwrap();
        }
        assert_eq!(room.pop_fair().map(|p| p.1), Some(0));
        assert_eq!(room.pop_fair().map(|p| p.1), Some(1));
        assert_eq!(room.pop_fair().map(|p| p.1), Some(2));
        assert_eq!(room.pop_fair(), None);
    }

    #[test]
    fn weights_share_slots_two_to_one() {
        let t0 = Instant::now();
        let mut room = WaitingRoom::new(100);
        for i in 0..30 {
            room.push("heavy".into(), 2, i, t0).unwrap();
            room.push("light".into(), 1, i, t0 + Duration::from_millis(1)).unwrap();
        }
        let mut held = HashMap::<String, usize>::new();
        for _ in 0..6 {
            let (k, _) = room.pop_fair().unwrap();
            *held.entry(k).or_default() += 1;
        }
        assert_eq!(held["heavy"], 4);
        assert_eq!(held["light"], 2);
        // A freed heavy slot goes back to heavy: it is at 3/2 against light's 2/1.
        room.release("heavy");
        assert_eq!(room.pop_fair().unwrap().0, "heavy");
    }

    #[test]
    fn full_room_refuses_and_expiry_removes_oldest() {
        let t0 = Instant::now();
        let mut room = WaitingRoom::new(2);
        room.push("a".into(), 1, 1, t0).unwrap();
        room.push("b".into(), 1, 2, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(room.push("a".into(), 1, 3, t0), Err(3));
        assert_eq!(room.next_expiry(Duration::from_secs(5)), Some(t0 + Duration::from_secs(5)));
        assert_eq!(room.expire(t0 + Duration::from_secs(5), Duration::from_secs(5)), vec![1]);
        assert_eq!(room.len(), 1);
        assert_eq!(room.views().len(), 1);
    }

    #[test]
    fn idle_classes_are_forgotten() {
        let mut room = WaitingRoom::new(2);
        room.push("a".into(), 1, 1, Instant::now()).unwrap();
        room.pop_fair().unwrap();
        assert_eq!(room.views().len(), 1);
        room.release("a");
        assert!(room.views().is_empty());
    }
}
