//! The fixed shape of the simulated contact center: teams, priorities, inboxes, the
//! arrival profile, shift templates and the calibration constants. Everything tunable
//! lives here so that the calibration can be read in one place.

/// A human team; each has its own queue in each agent pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Team {
    Billing,
    Support,
    Sales,
}

impl Team {
    pub(crate) const ALL: [Team; 3] = [Team::Billing, Team::Support, Team::Sales];
    /// Share of the conversations the bot hands to each team.
    pub(crate) const SHARE: [f64; 3] = [0.35, 0.45, 0.20];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Team::Billing => "billing",
            Team::Support => "support",
            Team::Sales => "sales",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Team::Billing => 0,
            Team::Support => 1,
            Team::Sales => 2,
        }
    }

    /// Chatwoot team ids are 1-based in the order of `ALL`.
    pub(crate) fn chatwoot_id(self) -> u32 {
        self.index() as u32 + 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub(crate) const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];
    pub(crate) const WEIGHTS: [f64; 4] = [0.20, 0.68, 0.10, 0.02];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// Queue order: a larger rank is served first.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    /// Chatwoot has no "normal": a conversation without priority is its normal.
    pub(crate) fn chatwoot(self) -> Option<&'static str> {
        match self {
            Priority::Low => Some("low"),
            Priority::Normal => None,
            Priority::High => Some("high"),
            Priority::Urgent => Some("urgent"),
        }
    }
}

/// A WhatsApp business number handled through the agent log.
pub(crate) struct WaInbox {
    pub(crate) phone_number_id: &'static str,
    pub(crate) display_phone_number: &'static str,
    /// Each number sits in its own WhatsApp Business Account, so a POST body with two
    /// `entry` objects (one per account) is a natural thing for Meta to send.
    pub(crate) waba_id: &'static str,
}

pub(crate) const WA_INBOXES: [WaInbox; 2] = [
    WaInbox {
        phone_number_id: "104729381001",
        display_phone_number: "5511300010001",
        waba_id: "240000000000001",
    },
    WaInbox {
        phone_number_id: "104729381002",
        display_phone_number: "5511300010002",
        waba_id: "240000000000002",
    },
];

pub(crate) const CW_INBOX_ID: u32 = 7;
pub(crate) const CW_INBOX_NAME: &str = "Site";
pub(crate) const CW_ACCOUNT_ID: u32 = 3;
pub(crate) const CW_ACCOUNT_NAME: &str = "Acme";
pub(crate) const CW_CHANNEL: &str = "Channel::WebWidget";
pub(crate) const CW_BOT_ID: u32 = 1;
pub(crate) const CW_BOT_NAME: &str = "Triage Bot";
pub(crate) const CW_FIRST_USER_ID: u32 = 101;
pub(crate) const CW_FIRST_CONTACT_ID: u64 = 5_001;
pub(crate) const CW_FIRST_MESSAGE_ID: u64 = 90_001;

/// Where an arriving conversation lands: WhatsApp number 1, number 2, Chatwoot.
pub(crate) const ARRIVAL_SPLIT: [f64; 3] = [0.45, 0.35, 0.20];

/// Relative arrival intensity per local hour on a weekday: a morning and an afternoon
/// peak, a lunch dip, quiet nights.
pub(crate) const HOUR_WEIGHTS: [f64; 24] = [
    0.20, 0.12, 0.08, 0.06, 0.06, 0.10, 0.25, 0.55, // 00-07
    0.95, 1.45, 1.65, 1.55, 1.05, 1.10, 1.45, 1.55, // 08-15
    1.45, 1.15, 0.85, 0.70, 0.55, 0.45, 0.35, 0.28, // 16-23
];

/// Daily volume relative to an average weekday, Monday first.
pub(crate) const DAY_FACTOR: [f64; 7] = [1.10, 1.00, 1.00, 1.00, 0.90, 0.40, 0.15];

/// Fraction of conversations the bot resolves without a human.
pub(crate) const BOT_CONTAINMENT: f64 = 0.22;

/// Handle time (assignment to resolution) and first reply delay, in seconds.
pub(crate) const HANDLE_MEDIAN_S: f64 = 540.0;
pub(crate) const HANDLE_SIGMA: f64 = 0.8;
pub(crate) const FIRST_REPLY_MEDIAN_S: f64 = 40.0;
pub(crate) const FIRST_REPLY_SIGMA: f64 = 0.7;
/// Conversations an agent holds at once.
pub(crate) const AGENT_CAPACITY: u8 = 3;

pub(crate) const TRANSFER_P: f64 = 0.06;
pub(crate) const REOPEN_P: f64 = 0.04;
pub(crate) const NOTE_P: f64 = 0.08;
pub(crate) const CSAT_P: f64 = 0.35;
pub(crate) const STATUS_FAILED_P: f64 = 0.01;

/// Customer patience while waiting in staffed hours (median, sigma).
pub(crate) const PATIENCE_MEDIAN_S: f64 = 15.0 * 60.0;
pub(crate) const PATIENCE_SIGMA: f64 = 0.7;
/// Out of hours, most customers leave the chat open and come back when agents are
/// there; the rest give up quickly (shorter than in the day).
pub(crate) const AFTER_HOURS_WAITERS: f64 = 0.88;
pub(crate) const AFTER_HOURS_WAIT_MEDIAN_S: f64 = 36.0 * 3600.0;
pub(crate) const AFTER_HOURS_QUICK_MEDIAN_S: f64 = 6.0 * 60.0;

/// Target agent utilization at the busiest hour: slightly under 1 keeps the queue
/// stable over the day while letting waits grow into tens of minutes at peaks.
pub(crate) const PEAK_UTILIZATION: f64 = 1.25;

/// Local shift windows in seconds after midnight.
pub(crate) struct ShiftTemplate {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

pub(crate) const WEEKDAY_SHIFTS: [ShiftTemplate; 4] = [
    // A short opening shift that clears what the night left before the peak.
    ShiftTemplate {
        start: 6 * 3600 + 1800,
        end: 10 * 3600 + 1800,
    },
    ShiftTemplate {
        start: 8 * 3600,
        end: 14 * 3600,
    },
    ShiftTemplate {
        start: 12 * 3600,
        end: 18 * 3600,
    },
    ShiftTemplate {
        start: 14 * 3600,
        end: 20 * 3600,
    },
];

pub(crate) const SATURDAY_SHIFT: ShiftTemplate = ShiftTemplate {
    start: 9 * 3600,
    end: 13 * 3600,
};

/// Brazilian area codes with rough population weights.
pub(crate) const DDDS: [(u32, f64); 20] = [
    (11, 30.0),
    (21, 10.0),
    (31, 6.0),
    (41, 4.0),
    (51, 4.0),
    (61, 4.0),
    (71, 4.0),
    (81, 4.0),
    (85, 4.0),
    (19, 4.0),
    (27, 2.0),
    (48, 2.0),
    (62, 3.0),
    (92, 2.0),
    (91, 2.0),
    (47, 2.0),
    (16, 2.0),
    (13, 2.0),
    (98, 1.0),
    (84, 1.0),
];
