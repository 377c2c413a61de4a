//! Kafka's protocol: request and response headers (flexible versions with their tagged
//! fields), API names, and the parts of bodies kshark reads: the topics, partitions and
//! record counts of Produce and Fetch, Metadata's topics, and error codes.
//!
//! Every reader here works on a message that may be cut short (a long one is kept only in
//! part): it returns what it could read.

pub const NAMES: [&str; 76] = [
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata", "ControlledShutdown", "OffsetCommit", "OffsetFetch",
    "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics",
    "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers",
    "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs", "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs",
    "SaslAuthenticate", "CreatePartitions", "CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken", "DescribeDelegationToken",
    "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs", "AlterPartitionReassignments", "ListPartitionReassignments", "OffsetDelete",
    "DescribeClientQuotas", "AlterClientQuotas", "DescribeUserScramCredentials", "AlterUserScramCredentials", "Vote", "BeginQuorumEpoch",
    "EndQuorumEpoch", "DescribeQuorum", "AlterPartition", "UpdateFeatures", "Envelope", "FetchSnapshot", "DescribeCluster", "DescribeProducers",
    "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker", "DescribeTransactions", "ListTransactions", "AllocateProducerIds",
    "ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "ControllerRegistration", "GetTelemetrySubscriptions", "PushTelemetry", "AssignReplicasToDirs",
    "ListClientMetricsResources", "DescribeTopicPartitions",
];

/// The first version of each API whose messages are flexible (compact strings and arrays,
/// tagged fields); `u16::MAX` for those that never are.
const FIRST_FLEXIBLE: [u16; 76] = [
    9, 12, 6, 9, 4, 2, 6, 3, 8, 6, 3, 6, 4, 4, 4, 5, 3, u16::MAX, 3, 5, 4, 2, 2, 4, 3, 3, 3, 1, 3, 2, 2, 2, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 0,
    u16::MAX, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

pub fn name(api: i16) -> Option<&'static str> {
    NAMES.get(usize::try_from(api).ok()?).copied()
}

pub fn flexible(api: i16, version: i16) -> bool {
    usize::try_from(api).ok().and_then(|a| FIRST_FLEXIBLE.get(a)).is_some_and(|f| version as i32 >= *f as i32)
}

/// Kafka's error codes by name (the common ones; others are shown by number).
pub fn error_name(code: i16) -> String {
    let n = match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        0 => "NONE",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        4 => "INVALID_FETCH_SIZE",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        12 => "OFFSET_METADATA_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        22 => "ILLEGAL_GENERATION",
        23 => "INCONSISTENT_GROUP_PROTOCOL",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        26 => "INVALID_SESSION_TIMEOUT",
        27 => "REBALANCE_IN_PROGRESS",
        28 => "INVALID_COMMIT_OFFSET_SIZE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        36 => "TOPIC_ALREADY_EXISTS",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        58 => "SASL_AUTHENTICATION_FAILED",
        72 => "LISTENER_NOT_FOUND",
        79 => "MEMBER_ID_REQUIRED",
        100 => "UNKNOWN_TOPIC_ID",
        _ => return format!("ERROR_{code}"),
    };
    n.to_string()
}

/// Reads a message's fields; every read is checked.
pub struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
    /// Compact strings and arrays, and tagged fields.
    pub flexible: bool,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], flexible: bool) -> Self {
        Reader { b, at: 0, flexible }
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
    pub fn i8(&mut self) -> Option<i8> {
        self.bytes(1).map(|b| b[0] as i8)
    }
    pub fn i16(&mut self) -> Option<i16> {
        self.bytes(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> Option<i32> {
        self.bytes(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> Option<i64> {
        self.bytes(8).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    pub fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let c = self.bytes(1)?[0];
            v |= ((c & 0x7f) as u64) << (7 * i);
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A length: compact (unsigned varint, less one; 0 is null) or classic (`i16`/`i32`,
    /// -1 is null). `None` inside is null.
    fn len(&mut self, wide: bool) -> Option<Option<usize>> {
        if self.flexible {
            let n = self.uvarint()?;
            return Some(n.checked_sub(1).map(|n| n as usize));
        }
        let n = if wide { self.i32()? as i64 } else { self.i16()? as i64 };
        Some(usize::try_from(n).ok())
    }
    pub fn string(&mut self) -> Option<Option<&'a [u8]>> {
        match self.len(false)? {
            Some(n) => Some(Some(self.bytes(n)?)),
            None => Some(None),
        }
    }
    /// Bytes (records): the part that is here when the message was cut short.
    pub fn bytes_field(&mut self) -> Option<Option<&'a [u8]>> {
        match self.len(true)? {
            Some(n) => {
                let end = self.at.saturating_add(n).min(self.b.len());
                let v = &self.b[self.at..end];
                self.at = self.at.saturating_add(n);
                Some(Some(v))
            }
            None => Some(None),
        }
    }
    /// An array's length (null arrays read as empty).
    pub fn array(&mut self) -> Option<usize> {
        Some(self.len(true)?.unwrap_or(0))
    }
    pub fn tags(&mut self) -> Option<()> {
        if self.flexible {
            let n = self.uvarint()?;
            for _ in 0..n.min(1024) {
                self.uvarint()?;
                let size = self.uvarint()? as usize;
                self.bytes(size)?;
            }
        }
        Some(())
    }
}

/// A request header: API, version, correlation id, client id; and the body's offset.
#[derive(Debug, PartialEq)]
pub struct RequestHeader<'a> {
    pub api: i16,
    pub version: i16,
    pub correlation: i32,
    pub client_id: Option<&'a [u8]>,
    pub body: usize,
}

/// Reads a request header (after the size); `None` when it is not Kafka's.
pub fn request_header(b: &[u8]) -> Option<RequestHeader<'_>> {
    let mut r = Reader::new(b, false);
    let api = r.i16()?;
    let version = r.i16()?;
    let correlation = r.i32()?;
    name(api)?;
    if !(0..=20).contains(&version) {
        return None;
    }
    // the client id is always a classic nullable string, even in header v2
    let client_id = r.string()?;
    if client_id.is_some_and(|c| c.iter().any(|b| !b.is_ascii_graphic() && *b != b' ')) {
        return None;
    }
    if flexible(api, version) {
        r.flexible = true;
        r.tags()?;
    }
    Some(RequestHeader { api, version, correlation, client_id, body: r.at })
}

/// The records in a `records` field: the record batches' counts (magic 2), or the
/// message set's entries (magic 0 and 1). Counts what is here when cut short.
pub fn record_count(mut b: &[u8]) -> u64 {
    let mut n = 0u64;
    while b.len() >= 17 {
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        if len < 0 {
            break;
        }
        let magic = b[16];
        if magic >= 2 {
            match b.get(57..61) {
                Some(c) => n += i32::from_be_bytes([c[0], c[1], c[2], c[3]]).max(0) as u64,
                None => break,
            }
        } else {
            n += 1;
        }
        let next = 12 + len as usize;
        if next > b.len() {
            break;
        }
        b = &b[next..];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_versions() {
        // ApiVersions v3 (flexible): client id "adminclient-1", then tagged fields
        let b = b"\x00\x12\x00\x03\x00\x00\x00\x02\x00\x0dadminclient-1\x00\x12apache";
        let h = request_header(b).unwrap();
        assert_eq!((h.api, h.version, h.correlation), (18, 3, 2));
        assert_eq!(h.client_id, Some(&b"adminclient-1"[..]));
        assert_eq!(h.body, 24);
        assert!(flexible(0, 9) && !flexible(0, 8) && !flexible(17, 1));
        assert_eq!(name(0), Some("Produce"));
        assert!(request_header(b"\x01\x00\x00\x03\x00\x00\x00\x02\xff\xff").is_none(), "API 256");
        let mut r = Reader::new(b"\x96\x01", true);
        assert_eq!(r.uvarint(), Some(150));
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
    }
}
