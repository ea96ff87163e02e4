//! A cluster of one: joins immediately and loops notifications back in order.

use std::collections::VecDeque;

use sd_proto::node::SdNode;

use crate::{ClusterDriver, ClusterError, Event};

/// The membership of a sheep that is alone. Multi-sheep drivers replace it.
#[derive(Debug, Default)]
pub struct SingleNode {
    me: Option<SdNode>,
    queue: VecDeque<Event>,
}

impl SingleNode {
    /// A driver that has not joined yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ClusterDriver for SingleNode {
    async fn join(&mut self, me: SdNode) -> Result<Vec<SdNode>, ClusterError> {
        self.me = Some(me);
        self.queue.push_back(Event::Joined(me));
        Ok(vec![me])
    }

    async fn notify(&mut self, msg: Vec<u8>) -> Result<(), ClusterError> {
        if self.me.is_none() {
            return Err(ClusterError::Closed);
        }
        self.queue.push_back(Event::Notification(msg));
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Event, ClusterError> {
        match self.queue.pop_front() {
            Some(e) => Ok(e),
            None => std::future::pending().await,
        }
    }
}
