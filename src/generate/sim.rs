//! The discrete-event simulation of the contact center.
//!
//! One clock, one queue of future happenings (`SimEv`). Each conversation follows a
//! small script of timed acts (customer message, bot message, agent message, ...) that
//! is written when a phase starts (arrival, assignment) and executed one act at a time;
//! anything that can interrupt a script (the customer giving up, a reopen) bumps a
//! generation counter so stale acts are ignored. Agents, shifts and per-team priority
//! queues decide when the human phase starts. Every act emits the lines the real
//! platforms would send, stamped with the clock.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;

use super::agent_log::{self, Attrs, Line};
use super::chatwoot::{
    self, AssigneeRef, Change, ContactRef, ConvState, MessageEvent, PrevCur, Sender, TeamRef,
    UserSender,
};
use super::clock::{self, HOUR, MINUTE, rfc3339, rfc3339_millis};
use super::fake;
use super::model::{
    self, AFTER_HOURS_QUICK_MEDIAN_S, AFTER_HOURS_WAIT_MEDIAN_S, AFTER_HOURS_WAITERS,
    AGENT_CAPACITY, BOT_CONTAINMENT, CSAT_P, CW_FIRST_CONTACT_ID, CW_FIRST_MESSAGE_ID,
    CW_FIRST_USER_ID, DAY_FACTOR, DDDS, FIRST_REPLY_MEDIAN_S, FIRST_REPLY_SIGMA, HANDLE_MEDIAN_S,
    HANDLE_SIGMA, HOUR_WEIGHTS, NOTE_P, PATIENCE_MEDIAN_S, PATIENCE_SIGMA, PEAK_UTILIZATION,
    Priority, REOPEN_P, SATURDAY_SHIFT, STATUS_FAILED_P, ShiftTemplate, TRANSFER_P, Team,
    WA_INBOXES, WEEKDAY_SHIFTS,
};
use super::output::{Output, WaPiece};
use super::rng::{SimRng, mix};
use super::truth::{ConvRow, StatusRow, Truth};
use super::whatsapp::{self, Contact, Profile};
use super::{GenerateError, GenerateOptions, Progress};

/// The simulated period: local midnight of the first day to local midnight after the
/// last, as UTC instants, with every local midnight in between.
pub(crate) struct Window {
    pub(crate) start_utc: i64,
    pub(crate) end_utc: i64,
    pub(crate) day_starts: Vec<i64>,
}

impl Window {
    pub(crate) fn new(tz: Tz, start: NaiveDate, days: u32) -> Option<Self> {
        let mut day_starts = Vec::with_capacity(days as usize + 1);
        for d in 0..=days {
            let date = start.checked_add_days(Days::new(u64::from(d)))?;
            day_starts.push(clock::local_to_utc(tz, date, 0)?);
        }
        Some(Self {
            start_utc: *day_starts.first()?,
            end_utc: *day_starts.last()?,
            day_starts,
        })
    }
}

/// Repeat customers are drawn from a pool of past ones; the cap bounds memory on
/// very long runs (old customers simply stop coming back).
const POOL_CAP: usize = 200_000;
const REPEAT_P: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Wa(u8),
    Chatwoot,
}

impl Source {
    fn pool(self) -> usize {
        match self {
            Source::Wa(_) => 0,
            Source::Chatwoot => 1,
        }
    }
}

/// What the simulation knows about a customer; the strings are built once because
/// every message of the customer repeats them.
#[derive(Clone)]
struct Customer {
    /// "55" + DDD + 9-digit mobile number.
    digits: String,
    /// The truth's identity: E.164, or the BSUID for customers without a phone.
    canonical: String,
    /// WhatsApp's `wa_id`/`from`: old 8-digit format for some, absent for BSUID-only.
    wa_id: Option<String>,
    bsuid: String,
    old_format: bool,
    bsuid_only: bool,
    full_name: String,
    contact_json: String,
    cw_contact_id: u64,
    cw_source_id: String,
}

struct PoolEntry {
    customer: Customer,
    busy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Bot,
    Queued,
    Assigned,
    Resolved,
}

#[derive(Clone, Copy, Debug)]
enum Say {
    First,
    BotReply,
    Thanks,
    Talk,
    Nudge,
    Reopen,
}

#[derive(Clone, Copy, Debug)]
enum BotSay {
    Greeting,
    Menu,
    Handoff,
    Goodbye,
}

#[derive(Clone, Copy, Debug)]
enum AgentSay {
    First,
    Reply,
    Closing,
    TransferNotice,
}

/// Who writes a Chatwoot message; the sender object is built from the conversation.
#[derive(Clone, Copy, Debug)]
enum Who {
    Customer,
    Bot,
    Agent,
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Customer(Say),
    Bot(BotSay),
    BotResolve,
    Handoff,
    Agent(AgentSay),
    Note,
    Resolve,
    Transfer(Team),
}

struct Conv {
    /// Order of arrival over both sources (truth rows follow it).
    seq: u64,
    source: Source,
    /// "c-000001" or "chatwoot:7:1".
    id: String,
    /// Chatwoot display id (Chatwoot conversations only).
    display_id: u32,
    cust: Customer,
    pool_slot: Option<usize>,
    epoch: u32,
    pgen: u32,
    qgen: u32,
    script: VecDeque<(i64, Act)>,
    phase: Phase,
    team: Option<Team>,
    priority: Priority,
    agent: Option<usize>,
    seg_replied: bool,
    started: i64,
    queued_at: Option<i64>,
    assigned_at: Option<i64>,
    first_resp_at: Option<i64>,
    first_resp_team: Option<Team>,
    first_resp_agent: Option<usize>,
    resolved_at: Option<i64>,
    resolved_team: Option<Team>,
    resolved_agent: Option<usize>,
    messages_in: u32,
    messages_out: u32,
    notes: u32,
    transfers: u32,
    reopens: u32,
    csat: Option<(u8, i64)>,
    last_out_wamid: Option<String>,
    wa_conversation: String,
    cw_status: &'static str,
    cw_assignee: Option<usize>,
    cw_updated: i64,
    last_activity: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AgentStatus {
    Offline,
    Available,
    Paused,
}

impl AgentStatus {
    fn name(self) -> &'static str {
        match self {
            AgentStatus::Offline => "offline",
            AgentStatus::Available => "available",
            AgentStatus::Paused => "paused",
        }
    }
}

struct Agent {
    pool: usize,
    team: Team,
    /// The agent-log `agent_id` ("ana.souza"); for Chatwoot users, "chatwoot:101".
    truth_id: String,
    cw_id: u32,
    name: String,
    email: String,
    shift: usize,
    /// Position in the team, for rotating the Saturday shift.
    rank: usize,
    status: AgentStatus,
    reason: &'static str,
    since: Option<i64>,
    shift_over: bool,
    load: u8,
    last_assign: i64,
}

#[derive(Clone, Copy, Debug)]
enum ShiftEv {
    Start,
    PauseStart(&'static str),
    PauseEnd,
    End,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Arrival,
    DayStart(u32),
    Step { conv: u64, epoch: u32 },
    Patience { conv: u64, pgen: u32 },
    Nudge { conv: u64, pgen: u32 },
    Csat { conv: u64, epoch: u32 },
    Reopen { conv: u64, epoch: u32 },
    Finalize { conv: u64, epoch: u32 },
    Shift { agent: usize, what: ShiftEv },
}

struct SimEv {
    t: i64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for SimEv {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for SimEv {}
impl PartialOrd for SimEv {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SimEv {
    // Earliest first out of the max-heap; same-second events in scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        other.t.cmp(&self.t).then(other.seq.cmp(&self.seq))
    }
}

/// A waiting conversation in a team queue. Entries are never removed early: a
/// conversation that left or moved bumps its `qgen`, and the stale entry is skipped
/// when it reaches the head.
#[derive(PartialEq, Eq)]
struct QEntry {
    rank: u8,
    since: i64,
    seq: u64,
    qgen: u32,
}

impl PartialOrd for QEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for QEntry {
    // Higher priority first, then longest waiting, then earliest conversation.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank
            .cmp(&other.rank)
            .then(other.since.cmp(&self.since))
            .then(other.seq.cmp(&self.seq))
    }
}

/// Non-homogeneous Poisson arrivals with a rate that is constant over each UTC
/// quarter hour (every time zone offset in use is a multiple of 15 minutes, so each
/// quarter lies within one local hour).
struct Arrivals {
    t: f64,
    seg_end: i64,
    rate: f64,
    end: i64,
    /// Arrivals per second at weight 1 on a day of factor 1.
    base: f64,
    tz: Tz,
}

const SEGMENT_S: i64 = 900;

impl Arrivals {
    fn new(tz: Tz, start: i64, end: i64, per_day: f64) -> Self {
        let week: f64 = DAY_FACTOR.iter().sum();
        let weights: f64 = HOUR_WEIGHTS.iter().sum();
        // Over a week the days sum to 7 * per_day.
        let base = 7.0 * per_day / week / weights / 3600.0;
        let mut a = Self {
            t: start as f64,
            seg_end: start,
            rate: 0.0,
            end,
            base,
            tz,
        };
        a.enter_segment(start);
        a
    }

    fn enter_segment(&mut self, at: i64) {
        let (wd, h) = clock::local_weekday_hour(self.tz, at);
        self.rate = self.base * DAY_FACTOR[wd as usize % 7] * HOUR_WEIGHTS[h as usize % 24];
        self.seg_end = ((at.div_euclid(SEGMENT_S) + 1) * SEGMENT_S).min(self.end);
    }

    fn next(&mut self, rng: &mut SimRng) -> Option<i64> {
        let mut budget = rng.exp1();
        loop {
            if self.t >= self.end as f64 {
                return None;
            }
            let room = (self.seg_end as f64 - self.t) * self.rate;
            if budget < room {
                self.t += budget / self.rate;
                let at = self.t.floor() as i64;
                return (at < self.end).then_some(at);
            }
            budget -= room;
            self.t = self.seg_end as f64;
            if self.seg_end >= self.end {
                return None;
            }
            self.enter_segment(self.seg_end);
        }
    }
}

/// Agents per weekday shift template and on Saturday, for one pool and team.
struct Staffing {
    shifts: [usize; 4],
    saturday: usize,
}

/// Sizes a team from its expected load. The unit of capacity is an agent holding
/// `AGENT_CAPACITY` conversations of mean handle time. Each shift is sized for the
/// busiest hour it covers alone at `PEAK_UTILIZATION`; the early one for the backlog
/// the night leaves.
fn staffing(per_day: f64, pool_share: f64, team_share: f64) -> Staffing {
    let week: f64 = DAY_FACTOR.iter().sum();
    let weights: f64 = HOUR_WEIGHTS.iter().sum();
    let weekday = 7.0 * per_day / week;
    // Transfers and reopens bring some conversations back to a queue.
    let human = weekday * pool_share * (1.0 - BOT_CONTAINMENT) * team_share * 1.10;
    let per_hour = |h: usize| human * HOUR_WEIGHTS[h] / weights;
    let mean_handle_h = HANDLE_MEDIAN_S * (HANDLE_SIGMA * HANDLE_SIGMA / 2.0).exp() / 3600.0;
    let rate = f64::from(AGENT_CAPACITY) / mean_handle_h;
    // Pauses take a few percent of the staffed time.
    let need = |load: f64| load / (rate * PEAK_UTILIZATION) * 1.05;
    let max_over = |r: std::ops::Range<usize>| r.map(per_hour).fold(0.0, f64::max);
    let backlog: f64 = (20..24).chain(0..7).map(per_hour).sum::<f64>() * AFTER_HOURS_WAITERS;
    // The short early shift is there to clear the night's backlog (in about an hour)
    // before the morning peak; the morning shift is sized for the peak alone.
    let early = (backlog / rate).ceil().max(1.0);
    let a = need(max_over(10..12)).ceil().max(1.0);
    let c = need(max_over(18..20)).ceil().max(1.0);
    let b = (need(max_over(14..18)).ceil() - c).max(1.0);
    let sat = need(max_over(9..13) * DAY_FACTOR[5] + backlog / 3.0);
    let shifts = [early as usize, a as usize, b as usize, c as usize];
    let total: usize = shifts.iter().sum();
    Staffing {
        shifts,
        saturday: (sat.ceil() as usize).clamp(1, total),
    }
}

pub(crate) struct Sim {
    tz: Tz,
    start_date: NaiveDate,
    days: u32,
    window: Window,
    salt: u64,
    rng: SimRng,
    now: i64,
    ev_seq: u64,
    events: BinaryHeap<SimEv>,
    convs: HashMap<u64, Conv>,
    agents: Vec<Agent>,
    team_agents: [[Vec<usize>; 3]; 2],
    /// How many of a team work on Saturday; who does rotates week by week.
    saturday_staff: [[usize; 3]; 2],
    queues: [[BinaryHeap<QEntry>; 3]; 2],
    dirty: u8,
    pools: [Vec<PoolEntry>; 2],
    arrivals: Arrivals,
    next_conv_seq: u64,
    next_c: u64,
    next_display: u32,
    next_cw_message: u64,
    next_wamid: u64,
    next_customer: u64,
    pub(crate) out: Output,
    pub(crate) truth: Truth,
}

impl Sim {
    pub(crate) fn new(opts: &GenerateOptions, window: Window) -> Result<Self, GenerateError> {
        let mut rng = SimRng::new(opts.seed, 0x51A1);
        let salt = mix(opts.seed, 0x5A17);
        let per_day = f64::from(opts.conversations_per_day);
        let out = Output::new(&opts.out, window.end_utc, opts.seed);
        let truth = Truth::create(&opts.out)?;
        let arrivals = Arrivals::new(opts.timezone, window.start_utc, window.end_utc, per_day);

        // Unique, shuffled "first last" pairs: logins for the agent-log pool and
        // display names for Chatwoot users.
        let mut names: Vec<(usize, usize)> = (0..fake::FIRST_NAMES.len())
            .flat_map(|f| (0..fake::LAST_NAMES.len()).map(move |l| (f, l)))
            .collect();
        for i in (1..names.len()).rev() {
            let j = rng.index(i + 1);
            names.swap(i, j);
        }
        let mut agents = Vec::new();
        let mut team_agents: [[Vec<usize>; 3]; 2] = Default::default();
        let mut saturday_staff = [[0usize; 3]; 2];
        let mut next_name = 0usize;
        let mut next_user = CW_FIRST_USER_ID;
        let pool_shares = [
            model::ARRIVAL_SPLIT[0] + model::ARRIVAL_SPLIT[1],
            model::ARRIVAL_SPLIT[2],
        ];
        for (pool, share) in pool_shares.iter().enumerate() {
            for team in Team::ALL {
                let staff = staffing(per_day, *share, Team::SHARE[team.index()]);
                saturday_staff[pool][team.index()] = staff.saturday;
                let mut rank = 0;
                for (shift, count) in staff.shifts.iter().enumerate() {
                    for _ in 0..*count {
                        let (f, l) = names[next_name % names.len()];
                        let round = next_name / names.len();
                        next_name += 1;
                        let first = fake::FIRST_NAMES[f];
                        let last = fake::LAST_NAMES[l];
                        let mut login =
                            format!("{}.{}", fake::ascii_lower(first), fake::ascii_lower(last));
                        if round > 0 {
                            login.push_str(&(round + 1).to_string());
                        }
                        let (truth_id, cw_id) = if pool == 0 {
                            (login.clone(), 0)
                        } else {
                            let id = next_user;
                            next_user += 1;
                            (format!("chatwoot:{id}"), id)
                        };
                        team_agents[pool][team.index()].push(agents.len());
                        agents.push(Agent {
                            pool,
                            team,
                            truth_id,
                            cw_id,
                            name: format!("{first} {last}"),
                            email: format!("{login}@acme.example"),
                            shift,
                            rank,
                            status: AgentStatus::Offline,
                            reason: "",
                            since: None,
                            shift_over: true,
                            load: 0,
                            last_assign: 0,
                        });
                        rank += 1;
                    }
                }
            }
        }

        let mut sim = Self {
            tz: opts.timezone,
            start_date: opts.start,
            days: opts.days,
            now: window.start_utc,
            window,
            salt,
            rng,
            ev_seq: 0,
            events: BinaryHeap::new(),
            convs: HashMap::new(),
            agents,
            team_agents,
            saturday_staff,
            queues: Default::default(),
            dirty: 0,
            pools: [Vec::new(), Vec::new()],
            arrivals,
            next_conv_seq: 0,
            next_c: 1 + u64::from(opts.id_offset),
            next_display: 1 + opts.id_offset,
            next_cw_message: CW_FIRST_MESSAGE_ID + 1_000 * u64::from(opts.id_offset),
            next_wamid: 1,
            next_customer: 0,
            out,
            truth,
        };
        sim.schedule(sim.window.start_utc, Ev::DayStart(0));
        if let Some(t) = sim.arrivals.next(&mut sim.rng) {
            sim.schedule(t, Ev::Arrival);
        }
        Ok(sim)
    }

    fn schedule(&mut self, t: i64, ev: Ev) {
        self.ev_seq += 1;
        self.events.push(SimEv {
            t,
            seq: self.ev_seq,
            ev,
        });
    }

    pub(crate) fn run(&mut self, progress: &mut dyn FnMut(&Progress)) -> Result<(), GenerateError> {
        while let Some(SimEv { t, ev, .. }) = self.events.pop() {
            if t >= self.window.end_utc {
                break;
            }
            if t > self.now {
                self.out.flush_before(t)?;
                self.truth.drain()?;
                self.now = t;
            }
            if let Ev::DayStart(d) = ev
                && d > 0
            {
                progress(&Progress {
                    day: d,
                    days: self.days,
                    events: self.out.events,
                });
            }
            self.handle(ev);
            while self.dirty != 0 {
                let bit = self.dirty.trailing_zeros() as usize;
                self.dirty &= !(1 << bit);
                self.dispatch(bit / 3, bit % 3);
            }
            if let Some(e) = self.out.take_error() {
                return Err(e);
            }
        }
        self.now = self.window.end_utc;
        self.out.finish()?;
        if let Some(e) = self.out.take_error() {
            return Err(e);
        }
        // Conversations still running at the end are written as they stand.
        let mut open: Vec<u64> = self.convs.keys().copied().collect();
        open.sort_unstable();
        for id in open {
            if let Some(c) = self.convs.remove(&id) {
                self.record_truth(&c);
            }
        }
        let end = self.window.end_utc;
        for a in &self.agents {
            if let Some(from) = a.since
                && a.pool == 0
            {
                self.truth.status_rows.push(StatusRow {
                    agent_id: a.truth_id.clone(),
                    from,
                    to: end,
                    status: a.status.name(),
                    reason: a.reason,
                });
            }
        }
        self.truth.finish()?;
        progress(&Progress {
            day: self.days,
            days: self.days,
            events: self.out.events,
        });
        Ok(())
    }

    pub(crate) fn window_bounds(&self) -> (i64, i64) {
        (self.window.start_utc, self.window.end_utc)
    }

    pub(crate) fn conversations(&self) -> u64 {
        self.next_conv_seq
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => {
                self.arrive();
                if let Some(t) = self.arrivals.next(&mut self.rng) {
                    self.schedule(t, Ev::Arrival);
                }
            }
            Ev::DayStart(d) => {
                self.plan_day(d);
                if d + 1 < self.days
                    && let Some(t) = self.window.day_starts.get(d as usize + 1).copied()
                {
                    self.schedule(t, Ev::DayStart(d + 1));
                }
            }
            Ev::Step { conv, epoch } => self.step(conv, epoch),
            Ev::Patience { conv, pgen } => self.patience(conv, pgen),
            Ev::Nudge { conv, pgen } => {
                if let Some(mut c) = self.convs.remove(&conv) {
                    if c.pgen == pgen && waiting(&c) {
                        self.customer_msg(&mut c, Say::Nudge);
                    }
                    self.convs.insert(conv, c);
                }
            }
            Ev::Csat { conv, epoch } => {
                if let Some(mut c) = self.convs.remove(&conv) {
                    if c.epoch == epoch && c.phase == Phase::Resolved {
                        self.csat(&mut c);
                    }
                    self.convs.insert(conv, c);
                }
            }
            Ev::Reopen { conv, epoch } => {
                if let Some(mut c) = self.convs.remove(&conv) {
                    if c.epoch == epoch && c.phase == Phase::Resolved {
                        self.reopen(&mut c);
                    }
                    self.convs.insert(conv, c);
                }
            }
            Ev::Finalize { conv, epoch } => {
                if let Some(c) = self.convs.remove(&conv) {
                    if c.epoch == epoch && c.phase == Phase::Resolved {
                        self.finalize(c);
                    } else {
                        self.convs.insert(conv, c);
                    }
                }
            }
            Ev::Shift { agent, what } => self.shift(agent, what),
        }
    }

    // ---- customers -------------------------------------------------------------

    fn new_customer(&mut self, pool: usize) -> Customer {
        let idx = u128::from(self.next_customer);
        self.next_customer += 1;
        let salt = u128::from(self.salt);
        let ddd = DDDS[self.rng.weighted(&DDDS.map(|d| d.1))].0;
        // Bijective scrambles of the counter keep numbers and BSUIDs unique while
        // looking random: both multipliers are odd and not multiples of 5, so they
        // share no factor with the power-of-ten moduli.
        let sub = 60_000_000 + (idx * 7_777_777 + salt) % 40_000_000;
        let digits = format!("55{ddd}9{sub:08}");
        let bsuid = format!(
            "BR.1{:018}",
            (idx * 736_481_958_273_645_117 + (salt >> 7)) % 1_000_000_000_000_000_000
        );
        let (bsuid_only, old_format) = if pool == 0 {
            let r = self.rng.unit();
            (r < 0.05, (0.05..0.15).contains(&r))
        } else {
            (false, false)
        };
        let wa_id = if bsuid_only {
            None
        } else if old_format {
            Some(format!("55{ddd}{sub:08}"))
        } else {
            Some(digits.clone())
        };
        let first_name = *self.rng.pick(fake::FIRST_NAMES);
        let last_name = *self.rng.pick(fake::LAST_NAMES);
        let contact_json = serde_json::to_string(&Contact {
            profile: Profile { name: first_name },
            wa_id: wa_id.as_deref(),
            user_id: &bsuid,
        });
        let contact_json = match contact_json {
            Ok(s) => s,
            Err(e) => {
                self.out.fail(e);
                String::new()
            }
        };
        let n = self.next_customer;
        Customer {
            canonical: if bsuid_only {
                bsuid.clone()
            } else {
                format!("+{digits}")
            },
            digits,
            wa_id,
            bsuid,
            old_format,
            bsuid_only,
            full_name: format!("{first_name} {last_name}"),
            contact_json,
            cw_contact_id: CW_FIRST_CONTACT_ID + n,
            cw_source_id: chatwoot::uuid_like(mix(n, self.salt), mix(self.salt, n)),
        }
    }

    /// A returning customer (if one is free: a customer never has two conversations
    /// at once, which keeps WhatsApp messages attributable) or a new one.
    fn pick_customer(&mut self, pool: usize) -> (Customer, Option<usize>) {
        let len = self.pools[pool].len();
        if len > 0 && self.rng.chance(REPEAT_P) {
            let i = self.rng.index(len);
            let e = &mut self.pools[pool][i];
            if !e.busy {
                e.busy = true;
                return (e.customer.clone(), Some(i));
            }
        }
        let c = self.new_customer(pool);
        let entry = PoolEntry {
            customer: c.clone(),
            busy: true,
        };
        if len < POOL_CAP {
            self.pools[pool].push(entry);
            return (c, Some(len));
        }
        let i = self.rng.index(len);
        if self.pools[pool][i].busy {
            (c, None)
        } else {
            self.pools[pool][i] = entry;
            (c, Some(i))
        }
    }

    // ---- arrivals and the bot ----------------------------------------------------

    fn arrive(&mut self) {
        let now = self.now;
        let r = self.rng.weighted(&model::ARRIVAL_SPLIT);
        let source = if r < 2 {
            Source::Wa(r as u8)
        } else {
            Source::Chatwoot
        };
        let (cust, pool_slot) = self.pick_customer(source.pool());
        let seq = self.next_conv_seq;
        self.next_conv_seq += 1;
        let (id, display_id) = match source {
            Source::Wa(_) => {
                let n = self.next_c;
                self.next_c += 1;
                (format!("c-{n:06}"), 0)
            }
            Source::Chatwoot => {
                let n = self.next_display;
                self.next_display += 1;
                (format!("chatwoot:{}:{n}", model::CW_INBOX_ID), n)
            }
        };
        let wa_conversation = format!("{:016x}{:016x}", mix(seq, self.salt), mix(self.salt, seq));
        let mut c = Conv {
            seq,
            source,
            id,
            display_id,
            cust,
            pool_slot,
            epoch: 0,
            pgen: 0,
            qgen: 0,
            script: VecDeque::new(),
            phase: Phase::Bot,
            team: None,
            priority: Priority::Normal,
            agent: None,
            seg_replied: false,
            started: now,
            queued_at: None,
            assigned_at: None,
            first_resp_at: None,
            first_resp_team: None,
            first_resp_agent: None,
            resolved_at: None,
            resolved_team: None,
            resolved_agent: None,
            messages_in: 0,
            messages_out: 0,
            notes: 0,
            transfers: 0,
            reopens: 0,
            csat: None,
            last_out_wamid: None,
            wa_conversation,
            cw_status: "pending",
            cw_assignee: None,
            cw_updated: now,
            last_activity: now,
        };
        match source {
            Source::Wa(_) => {
                let customer = self.customer_notation(&c.cust);
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.opened", &c);
                    l.customer = Some(&customer);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                self.cw_conv_event(&mut c, "conversation_created", None, None, None)
            }
        }
        self.customer_msg(&mut c, Say::First);
        self.bot_script(&mut c);
        self.start_script(&c);
        self.convs.insert(seq, c);
    }

    /// How the agent desktop writes this customer: BSUID as is; phones in varying
    /// notations, always with the ninth digit (even when WhatsApp omits it).
    fn customer_notation(&mut self, cust: &Customer) -> String {
        if cust.bsuid_only {
            return cust.bsuid.clone();
        }
        let style = if cust.old_format {
            3 - self.rng.int(0, 1) as u8
        } else {
            self.rng.int(0, 3) as u8
        };
        agent_log::phone_notation(&cust.digits, style)
    }

    fn bot_script(&mut self, c: &mut Conv) {
        let mut t = self.now;
        let n_bot = 1 + self.rng.weighted(&[0.30, 0.45, 0.25]);
        let contained = self.rng.chance(BOT_CONTAINMENT);
        for i in 0..n_bot {
            t += self.rng.int(1, 4);
            let last = i + 1 == n_bot;
            let say = match (i, last, contained) {
                (_, true, true) => BotSay::Goodbye,
                (_, true, false) => BotSay::Handoff,
                (0, _, _) => BotSay::Greeting,
                _ => BotSay::Menu,
            };
            c.script.push_back((t, Act::Bot(say)));
            if !last {
                t += self.rng.secs(25.0, 0.7, 3, 300);
                c.script.push_back((t, Act::Customer(Say::BotReply)));
            }
        }
        if contained {
            if self.rng.chance(0.5) {
                t += self.rng.secs(20.0, 0.6, 3, 180);
                c.script.push_back((t, Act::Customer(Say::Thanks)));
            }
            t += self.rng.int(10, 90);
            c.script.push_back((t, Act::BotResolve));
        } else {
            t += self.rng.int(1, 3);
            c.script.push_back((t, Act::Handoff));
        }
    }

    fn start_script(&mut self, c: &Conv) {
        if let Some((t, _)) = c.script.front() {
            self.schedule(
                *t,
                Ev::Step {
                    conv: c.seq,
                    epoch: c.epoch,
                },
            );
        }
    }

    fn step(&mut self, id: u64, epoch: u32) {
        let Some(mut c) = self.convs.remove(&id) else {
            return;
        };
        if c.epoch != epoch {
            self.convs.insert(id, c);
            return;
        }
        let Some((_, act)) = c.script.pop_front() else {
            self.convs.insert(id, c);
            return;
        };
        let keep = match act {
            Act::Customer(say) => {
                self.customer_msg(&mut c, say);
                true
            }
            Act::Bot(say) => {
                self.bot_msg(&mut c, say);
                true
            }
            Act::BotResolve => {
                self.bot_resolve(&mut c);
                false
            }
            Act::Handoff => {
                self.handoff(&mut c);
                true
            }
            Act::Agent(say) => {
                self.agent_msg(&mut c, say);
                true
            }
            Act::Note => {
                self.note(&mut c);
                true
            }
            Act::Resolve => self.resolve(&mut c),
            Act::Transfer(team) => {
                self.transfer(&mut c, team);
                true
            }
        };
        if keep {
            if let Some((t, _)) = c.script.front() {
                let t = *t;
                self.schedule(
                    t,
                    Ev::Step {
                        conv: id,
                        epoch: c.epoch,
                    },
                );
            }
            self.convs.insert(id, c);
        } else {
            self.finalize(c);
        }
    }

    // ---- messages ------------------------------------------------------------------

    fn customer_msg(&mut self, c: &mut Conv, say: Say) {
        c.last_activity = self.now;
        let text = match say {
            Say::First => *self.rng.pick(fake::FIRST_MESSAGES),
            Say::BotReply => *self.rng.pick(fake::BOT_REPLIES_FROM_CUSTOMER),
            Say::Thanks => *self.rng.pick(fake::THANKS),
            Say::Talk => *self.rng.pick(fake::CUSTOMER_TALK),
            Say::Nudge => *self.rng.pick(fake::NUDGES),
            Say::Reopen => *self.rng.pick(fake::REOPENS),
        };
        let is_message = match c.source {
            Source::Wa(inbox) => self.wa_inbound(&*c, inbox, say, text),
            Source::Chatwoot => {
                self.cw_message(c, "incoming", false, Who::Customer, text);
                true
            }
        };
        // A reaction is no message (docs/sources.md): the truth does not count it either.
        if is_message {
            c.messages_in += 1;
        }
    }

    /// Sends one customer message or reaction; false for a reaction.
    fn wa_inbound(&mut self, c: &Conv, inbox: u8, say: Say, text: &str) -> bool {
        let now = self.now;
        let key = c.cust.wa_id.as_deref().unwrap_or(&c.cust.bsuid);
        let wamid = whatsapp::wamid(key, self.next_wamid, self.salt);
        self.next_wamid += 1;
        let ts = now.to_string();
        // The message type follows what customers do at each point of a chat.
        let kinds: &[(&str, f64)] = match say {
            Say::First => &[
                ("text", 88.0),
                ("image", 5.0),
                ("audio", 5.0),
                ("document", 2.0),
            ],
            Say::BotReply => &[("text", 62.0), ("interactive", 35.0), ("button", 3.0)],
            Say::Thanks => &[("text", 80.0), ("sticker", 10.0), ("reaction", 10.0)],
            Say::Talk => &[
                ("text", 78.0),
                ("image", 8.0),
                ("audio", 6.0),
                ("document", 3.0),
                ("location", 1.5),
                ("sticker", 2.0),
                ("reaction", 1.5),
            ],
            Say::Nudge | Say::Reopen => &[("text", 90.0), ("audio", 10.0)],
        };
        let mut kind = kinds[self
            .rng
            .weighted(&kinds.iter().map(|k| k.1).collect::<Vec<_>>())]
        .0;
        if matches!(kind, "reaction" | "interactive") && c.last_out_wamid.is_none() {
            kind = "text";
        }
        let media_n = self.next_wamid;
        let media_id = format!(
            "{}",
            1_000_000_000_000_000 + mix(media_n, self.salt) % 9_000_000_000_000_000
        );
        let mut sha_raw = [0u8; 32];
        for (i, chunk) in sha_raw.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&mix(media_n, i as u64 ^ self.salt).to_le_bytes());
        }
        let sha = whatsapp::base64(&sha_raw);
        let button = *self.rng.pick(fake::BUTTON_TITLES);
        let emoji = *self.rng.pick(fake::REACTIONS);
        let doc_name = *self.rng.pick(fake::DOCUMENT_NAMES);
        let lat = -23.55 + (self.rng.unit() - 0.5) * 0.4;
        let lon = -46.63 + (self.rng.unit() - 0.5) * 0.4;
        let business = WA_INBOXES[usize::from(inbox) % WA_INBOXES.len()].display_phone_number;
        let last_out = c.last_out_wamid.as_deref().unwrap_or_default();
        let media = |mime: &'static str| whatsapp::Media {
            caption: None,
            filename: None,
            mime_type: mime,
            sha256: &sha,
            id: &media_id,
            voice: None,
            animated: None,
        };
        let mut m =
            whatsapp::Message::new(c.cust.wa_id.as_deref(), &c.cust.bsuid, &wamid, &ts, kind);
        match kind {
            "image" => {
                m.image = Some(whatsapp::Media {
                    caption: (text.len() > 12).then_some(text),
                    ..media("image/jpeg")
                });
            }
            "audio" => {
                m.audio = Some(whatsapp::Media {
                    voice: Some(true),
                    ..media("audio/ogg; codecs=opus")
                });
            }
            "document" => {
                m.document = Some(whatsapp::Media {
                    filename: Some(doc_name),
                    ..media("application/pdf")
                });
            }
            "sticker" => {
                m.sticker = Some(whatsapp::Media {
                    animated: Some(false),
                    ..media("image/webp")
                });
            }
            "location" => {
                m.location = Some(whatsapp::Location {
                    latitude: (lat * 1e6).round() / 1e6,
                    longitude: (lon * 1e6).round() / 1e6,
                    name: None,
                });
            }
            "interactive" => {
                m.context = Some(whatsapp::Context {
                    from: business,
                    id: last_out,
                });
                m.interactive = Some(whatsapp::Interactive {
                    kind: "button_reply",
                    button_reply: whatsapp::ButtonReply {
                        id: button.0,
                        title: button.1,
                    },
                });
            }
            "button" => {
                m.button = Some(whatsapp::Button {
                    payload: button.0,
                    text: button.1,
                });
            }
            "reaction" => {
                m.reaction = Some(whatsapp::Reaction {
                    message_id: last_out,
                    emoji,
                });
            }
            _ => m.text = Some(whatsapp::Text { body: text }),
        }
        match serde_json::to_string(&m) {
            Ok(json) => self.out.whatsapp(
                now,
                WaPiece {
                    inbox,
                    status: false,
                    json,
                    contact: Some(c.cust.contact_json.clone()),
                },
            ),
            Err(e) => self.out.fail(e),
        }
        kind != "reaction"
    }

    /// Delivery statuses of an outbound WhatsApp message, stamped in the near future.
    fn wa_statuses(&mut self, c: &Conv, inbox: u8, wamid: &str) {
        let mut steps: [(i64, &str); 3] = [(0, ""); 3];
        let n;
        if self.rng.chance(STATUS_FAILED_P) {
            steps[0] = (self.now + self.rng.int(1, 3), "failed");
            n = 1;
        } else {
            let sent = self.now + self.rng.int(1, 2);
            let delivered = sent + self.rng.int(0, 4);
            steps[0] = (sent, "sent");
            steps[1] = (delivered, "delivered");
            // Most customers have the chat open and read within minutes.
            n = if self.rng.chance(0.85) {
                steps[2] = (delivered + self.rng.secs(35.0, 1.3, 1, 4 * HOUR), "read");
                3
            } else {
                2
            };
        }
        for (t, status) in steps.iter().take(n) {
            let ts = t.to_string();
            let s = whatsapp::Status::new(
                wamid,
                status,
                &ts,
                c.cust.wa_id.as_deref(),
                &c.cust.bsuid,
                &c.wa_conversation,
            );
            match serde_json::to_string(&s) {
                Ok(json) => self.out.whatsapp(
                    *t,
                    WaPiece {
                        inbox,
                        status: true,
                        json,
                        contact: None,
                    },
                ),
                Err(e) => self.out.fail(e),
            }
        }
    }

    fn bot_msg(&mut self, c: &mut Conv, say: BotSay) {
        let now = self.now;
        c.messages_out += 1;
        c.last_activity = now;
        let text = match say {
            BotSay::Greeting => *self.rng.pick(fake::BOT_GREETINGS),
            BotSay::Menu => *self.rng.pick(fake::BOT_MENUS),
            BotSay::Handoff => *self.rng.pick(fake::BOT_HANDOFFS),
            BotSay::Goodbye => *self.rng.pick(fake::BOT_GOODBYES),
        };
        match c.source {
            Source::Wa(inbox) => {
                let wamid = self.outbound_wamid(c);
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = Line::new(&ts, "message.sent");
                    l.conversation_id = Some(&c.id);
                    l.author = Some("bot");
                    l.message_id = Some(&wamid);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
                self.wa_statuses(c, inbox, &wamid);
                c.last_out_wamid = Some(wamid);
            }
            Source::Chatwoot => {
                self.cw_message(c, "outgoing", false, Who::Bot, text);
            }
        }
    }

    fn outbound_wamid(&mut self, c: &Conv) -> String {
        let key = c.cust.wa_id.as_deref().unwrap_or(&c.cust.bsuid);
        let w = whatsapp::wamid(key, self.next_wamid, self.salt);
        self.next_wamid += 1;
        w
    }

    fn agent_msg(&mut self, c: &mut Conv, say: AgentSay) {
        let Some(a) = c.agent else { return };
        let now = self.now;
        c.messages_out += 1;
        c.last_activity = now;
        if !c.seg_replied {
            c.seg_replied = true;
            // The customer has an answer: their patience no longer matters.
            c.pgen += 1;
        }
        if c.first_resp_at.is_none() && c.queued_at.is_some() {
            c.first_resp_at = Some(now);
            c.first_resp_team = c.team;
            c.first_resp_agent = Some(a);
        }
        let template = match say {
            AgentSay::First => *self.rng.pick(fake::AGENT_FIRST),
            AgentSay::Reply => *self.rng.pick(fake::AGENT_TALK),
            AgentSay::Closing => *self.rng.pick(fake::AGENT_CLOSING),
            AgentSay::TransferNotice => *self.rng.pick(fake::AGENT_TRANSFER),
        };
        match c.source {
            Source::Wa(inbox) => {
                let wamid = self.outbound_wamid(c);
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = Line::new(&ts, "message.sent");
                    l.conversation_id = Some(&c.id);
                    l.author = Some("agent");
                    l.agent_id = Some(&self.agents[a].truth_id);
                    l.message_id = Some(&wamid);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
                self.wa_statuses(c, inbox, &wamid);
                c.last_out_wamid = Some(wamid);
            }
            Source::Chatwoot => {
                let first = self.agents[a].name.split(' ').next().unwrap_or_default();
                let text = template.replace("{agent}", first);
                self.cw_message(c, "outgoing", false, Who::Agent, &text);
            }
        }
    }

    fn note(&mut self, c: &mut Conv) {
        let Some(a) = c.agent else { return };
        let now = self.now;
        c.notes += 1;
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = Line::new(&ts, "message.sent");
                    l.conversation_id = Some(&c.id);
                    l.author = Some("agent");
                    l.agent_id = Some(&self.agents[a].truth_id);
                    l.private = Some(true);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                let text = *self.rng.pick(fake::NOTES);
                self.cw_message(c, "outgoing", true, Who::Agent, text);
            }
        }
    }

    // ---- queueing, assignment, handling ---------------------------------------------

    fn handoff(&mut self, c: &mut Conv) {
        let now = self.now;
        let team = Team::ALL[self.rng.weighted(&Team::SHARE)];
        c.priority = Priority::ALL[self.rng.weighted(&Priority::WEIGHTS)];
        c.team = Some(team);
        c.queued_at = Some(now);
        c.phase = Phase::Queued;
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    agent_log::render(&conv_line(&ts, "conversation.queued", c))
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                c.cw_status = "open";
                self.cw_conv_event(
                    c,
                    "conversation_status_changed",
                    Some(("pending", "open")),
                    None,
                    None,
                );
            }
        }
        self.enqueue(c);
    }

    fn enqueue(&mut self, c: &mut Conv) {
        let Some(team) = c.team else { return };
        c.qgen += 1;
        let pool = c.source.pool();
        self.queues[pool][team.index()].push(QEntry {
            rank: c.priority.rank(),
            since: self.now,
            seq: c.seq,
            qgen: c.qgen,
        });
        self.dirty |= 1 << (pool * 3 + team.index());
        self.start_waiting(c, pool, team);
    }

    /// Arms the customer's patience for this wait (and maybe an impatient nudge).
    fn start_waiting(&mut self, c: &mut Conv, pool: usize, team: Team) {
        c.pgen += 1;
        let staffed = self.team_agents[pool][team.index()]
            .iter()
            .any(|a| !self.agents[*a].shift_over);
        let patience = if staffed {
            self.rng
                .secs(PATIENCE_MEDIAN_S, PATIENCE_SIGMA, 20, 12 * HOUR)
        } else if self.rng.chance(AFTER_HOURS_WAITERS) {
            self.rng
                .secs(AFTER_HOURS_WAIT_MEDIAN_S, 0.5, HOUR, 72 * HOUR)
        } else {
            self.rng
                .secs(AFTER_HOURS_QUICK_MEDIAN_S, PATIENCE_SIGMA, 20, 2 * HOUR)
        };
        let t = self.now + patience;
        self.schedule(
            t,
            Ev::Patience {
                conv: c.seq,
                pgen: c.pgen,
            },
        );
        if patience > 3 * MINUTE && self.rng.chance(0.35) {
            let at = self.now + self.rng.int(90, (patience - 30).min(30 * MINUTE));
            self.schedule(
                at,
                Ev::Nudge {
                    conv: c.seq,
                    pgen: c.pgen,
                },
            );
        }
    }

    fn dispatch(&mut self, pool: usize, team: usize) {
        loop {
            let mut best: Option<usize> = None;
            for &a in &self.team_agents[pool][team] {
                let ag = &self.agents[a];
                if ag.status != AgentStatus::Available || ag.load >= AGENT_CAPACITY {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        let bg = &self.agents[b];
                        (ag.load, ag.last_assign) < (bg.load, bg.last_assign)
                    }
                };
                if better {
                    best = Some(a);
                }
            }
            let Some(agent) = best else { return };
            let conv = loop {
                let Some(e) = self.queues[pool][team].pop() else {
                    return;
                };
                let live = self
                    .convs
                    .get(&e.seq)
                    .is_some_and(|c| c.qgen == e.qgen && c.phase == Phase::Queued);
                if live {
                    break e.seq;
                }
            };
            self.assign(conv, agent);
        }
    }

    fn assign(&mut self, id: u64, a: usize) {
        let Some(mut c) = self.convs.remove(&id) else {
            return;
        };
        let now = self.now;
        c.phase = Phase::Assigned;
        c.agent = Some(a);
        c.seg_replied = false;
        c.assigned_at.get_or_insert(now);
        self.agents[a].load += 1;
        self.agents[a].last_assign = now;
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.assigned", &c);
                    l.agent_id = Some(&self.agents[a].truth_id);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                let before = c.cw_assignee.map(|p| self.agents[p].cw_id);
                c.cw_assignee = Some(a);
                let after = Some(self.agents[a].cw_id);
                self.cw_conv_event(
                    &mut c,
                    "conversation_updated",
                    None,
                    Some((before, after)),
                    None,
                );
            }
        }
        self.segment_script(&mut c);
        self.start_script(&c);
        self.convs.insert(id, c);
    }

    /// The agent's part: first reply, a few exchanges, maybe a note, then resolution
    /// or a transfer.
    fn segment_script(&mut self, c: &mut Conv) {
        c.epoch += 1;
        c.script.clear();
        let ta = self.now;
        let h = self.rng.secs(HANDLE_MEDIAN_S, HANDLE_SIGMA, 60, 3 * HOUR);
        let d1 = self
            .rng
            .secs(FIRST_REPLY_MEDIAN_S, FIRST_REPLY_SIGMA, 3, 10 * MINUTE)
            .min(h / 2)
            .max(1);
        let t1 = ta + d1;
        let mut items: Vec<(i64, Act)> = Vec::with_capacity(12);
        let mut note = self.rng.chance(NOTE_P);
        if note && d1 >= 3 && self.rng.chance(0.4) {
            items.push((self.rng.int(ta + 1, t1 - 1), Act::Note));
            note = false;
        }
        items.push((t1, Act::Agent(AgentSay::First)));
        let transfer_p = if c.transfers == 0 { TRANSFER_P } else { 0.02 };
        let team = c.team.unwrap_or(Team::Support);
        if c.transfers < 2 && self.rng.chance(transfer_p) {
            let others: Vec<Team> = Team::ALL.into_iter().filter(|t| *t != team).collect();
            let to = *self.rng.pick(&others);
            let tt = t1 + self.rng.secs(150.0, 0.7, 30, 40 * MINUTE);
            let notice = tt - self.rng.int(5, 25);
            if self.rng.chance(0.5) {
                items.push((self.rng.int(t1 + 1, notice - 1), Act::Customer(Say::Talk)));
            }
            items.push((notice, Act::Agent(AgentSay::TransferNotice)));
            if note {
                items.push((self.rng.int(t1 + 1, tt - 1), Act::Note));
            }
            items.push((tt, Act::Transfer(to)));
        } else {
            let k = self.rng.weighted(&[0.15, 0.35, 0.30, 0.15, 0.05]);
            let closing = usize::from(self.rng.chance(0.6));
            let n = 2 * k + closing;
            let end = (ta + h).max(t1 + 3 + n as i64);
            let mut times: Vec<i64> = (0..n).map(|_| self.rng.int(t1 + 1, end - 1)).collect();
            times.sort_unstable();
            for (i, t) in times.into_iter().enumerate() {
                let act = if i >= 2 * k {
                    Act::Agent(AgentSay::Closing)
                } else if i % 2 == 0 {
                    Act::Customer(Say::Talk)
                } else {
                    Act::Agent(AgentSay::Reply)
                };
                items.push((t, act));
            }
            if note {
                items.push((self.rng.int(t1 + 1, end - 1), Act::Note));
            }
            items.push((end, Act::Resolve));
        }
        // Stable: equal times keep their planned order, and the closing act (strictly
        // the latest) stays last.
        items.sort_by_key(|(t, _)| *t);
        c.script.extend(items);
    }

    fn release(&mut self, a: usize) {
        let ag = &mut self.agents[a];
        ag.load = ag.load.saturating_sub(1);
        let (pool, team) = (ag.pool, ag.team);
        if ag.load == 0 && ag.shift_over && ag.status != AgentStatus::Offline {
            self.set_status(a, AgentStatus::Offline, "");
        }
        self.dirty |= 1 << (pool * 3 + team.index());
    }

    fn transfer(&mut self, c: &mut Conv, to: Team) {
        let now = self.now;
        let Some(a) = c.agent.take() else { return };
        self.release(a);
        let from = c.team;
        c.transfers += 1;
        c.team = Some(to);
        c.phase = Phase::Queued;
        c.seg_replied = false;
        match c.source {
            Source::Wa(_) => {
                let reason = *self.rng.pick(fake::TRANSFER_REASONS);
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.transferred", c);
                    l.reason = Some(reason);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                let before = c.cw_assignee.take().map(|p| self.agents[p].cw_id);
                self.cw_conv_event(
                    c,
                    "conversation_updated",
                    None,
                    Some((before, None)),
                    Some((from.map(Team::chatwoot_id), Some(to.chatwoot_id()))),
                );
            }
        }
        self.enqueue(c);
    }

    /// Agent resolution. Returns whether the conversation stays alive (a rating or a
    /// reopen may still come).
    fn resolve(&mut self, c: &mut Conv) -> bool {
        let now = self.now;
        let Some(a) = c.agent.take() else {
            return false;
        };
        self.release(a);
        c.phase = Phase::Resolved;
        c.resolved_at = Some(now);
        c.resolved_team = c.team;
        c.resolved_agent = Some(a);
        match c.source {
            Source::Wa(_) => {
                let tags: Vec<&str> = if self.rng.chance(0.3) {
                    vec![*self.rng.pick(fake::TAGS)]
                } else {
                    Vec::new()
                };
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.resolved", c);
                    l.agent_id = Some(&self.agents[a].truth_id);
                    l.reason = Some("solved");
                    if !tags.is_empty() {
                        l.attrs = Some(Attrs { tags: &tags });
                    }
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                c.cw_status = "resolved";
                self.cw_conv_event(
                    c,
                    "conversation_status_changed",
                    Some(("open", "resolved")),
                    None,
                    None,
                );
            }
        }
        let mut last = now;
        if self.rng.chance(CSAT_P) {
            let t = now + self.rng.int(60, 15 * MINUTE);
            self.schedule(
                t,
                Ev::Csat {
                    conv: c.seq,
                    epoch: c.epoch,
                },
            );
            last = last.max(t);
        }
        if c.reopens < 2 && self.rng.chance(REOPEN_P) {
            let t = now + self.rng.secs(90.0 * 60.0, 0.6, 10 * MINUTE, 6 * HOUR);
            self.schedule(
                t,
                Ev::Reopen {
                    conv: c.seq,
                    epoch: c.epoch,
                },
            );
            last = last.max(t);
        }
        if last == now {
            return false;
        }
        self.schedule(
            last + 1,
            Ev::Finalize {
                conv: c.seq,
                epoch: c.epoch,
            },
        );
        true
    }

    fn bot_resolve(&mut self, c: &mut Conv) {
        let now = self.now;
        c.phase = Phase::Resolved;
        c.resolved_at = Some(now);
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.resolved", c);
                    l.reason = Some("bot_resolved");
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                c.cw_status = "resolved";
                self.cw_conv_event(
                    c,
                    "conversation_status_changed",
                    Some(("pending", "resolved")),
                    None,
                    None,
                );
            }
        }
    }

    fn patience(&mut self, id: u64, pgen: u32) {
        let Some(mut c) = self.convs.remove(&id) else {
            return;
        };
        if c.pgen != pgen || !waiting(&c) {
            self.convs.insert(id, c);
            return;
        }
        let now = self.now;
        if let Some(a) = c.agent.take() {
            self.release(a);
        }
        c.epoch += 1;
        c.script.clear();
        c.phase = Phase::Resolved;
        c.resolved_at = Some(now);
        c.resolved_team = c.team;
        c.resolved_agent = None;
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.resolved", &c);
                    l.reason = Some("customer_left");
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                c.cw_status = "resolved";
                self.cw_conv_event(
                    &mut c,
                    "conversation_status_changed",
                    Some(("open", "resolved")),
                    None,
                    None,
                );
            }
        }
        self.finalize(c);
    }

    fn csat(&mut self, c: &mut Conv) {
        let now = self.now;
        // Ratings fall with the first wait: ~4.6 within a minute, ~2.5 past half an hour.
        let wait = match (c.queued_at, c.first_resp_at) {
            (Some(q), Some(f)) => (f - q).max(1) as f64,
            _ => 60.0,
        };
        let x = ((wait / 60.0).ln() / 30f64.ln()).clamp(0.0, 1.0);
        let mean = 4.75 - 2.25 * x;
        let score = (mean + 0.85 * self.rng.normal()).round().clamp(1.0, 5.0) as u8;
        c.csat = Some((score, now));
        match c.source {
            Source::Wa(_) => {
                let rendered = {
                    let ts = rfc3339(now);
                    let mut l = Line::new(&ts, "csat.submitted");
                    l.conversation_id = Some(&c.id);
                    l.score = Some(score);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, rendered);
            }
            Source::Chatwoot => {
                let feedback = *self
                    .rng
                    .pick(fake::CSAT_FEEDBACK[usize::from(score - 1) % 5]);
                let id = self.next_cw_message;
                self.next_cw_message += 1;
                let rendered = {
                    let created = rfc3339_millis(now);
                    let conv = self.cw_state(c).into_object(None, None);
                    let mut m = MessageEvent::new(
                        "message_updated",
                        id,
                        "Por favor, avalie o nosso atendimento",
                        &created,
                        "template",
                        None,
                        conv,
                    );
                    m.content_type = "input_csat";
                    m.content_attributes.submitted_values = Some(chatwoot::SubmittedValues {
                        csat_survey_response: chatwoot::CsatResponse {
                            rating: score,
                            feedback_message: feedback,
                        },
                    });
                    serde_json::to_string(&m)
                };
                self.out.chatwoot(now, rendered);
            }
        }
    }

    fn reopen(&mut self, c: &mut Conv) {
        let now = self.now;
        c.reopens += 1;
        c.epoch += 1;
        c.script.clear();
        c.phase = Phase::Queued;
        c.agent = None;
        c.seg_replied = false;
        match c.source {
            Source::Wa(_) => {
                self.customer_msg(c, Say::Reopen);
                let customer = self.customer_notation(&c.cust);
                let reopened = {
                    let ts = rfc3339(now);
                    let mut l = conv_line(&ts, "conversation.reopened", c);
                    l.customer = Some(&customer);
                    agent_log::render(&l)
                };
                self.out.agent_log(now, reopened);
                let queued = {
                    let ts = rfc3339(now);
                    agent_log::render(&conv_line(&ts, "conversation.queued", c))
                };
                self.out.agent_log(now, queued);
            }
            Source::Chatwoot => {
                // Chatwoot reopens on the incoming message; the status change goes out
                // first, then the message, then the cleared assignee (back to the queue).
                c.cw_status = "open";
                self.cw_conv_event(
                    c,
                    "conversation_status_changed",
                    Some(("resolved", "open")),
                    None,
                    None,
                );
                self.customer_msg(c, Say::Reopen);
                if let Some(p) = c.cw_assignee.take() {
                    let before = Some(self.agents[p].cw_id);
                    self.cw_conv_event(c, "conversation_updated", None, Some((before, None)), None);
                }
            }
        }
        self.enqueue(c);
    }

    fn finalize(&mut self, c: Conv) {
        if let Some(slot) = c.pool_slot
            && let Some(e) = self.pools[c.source.pool()].get_mut(slot)
        {
            e.busy = false;
        }
        self.record_truth(&c);
    }

    fn record_truth(&mut self, c: &Conv) {
        let outcome = if c.phase != Phase::Resolved {
            "open"
        } else if c.queued_at.is_none() {
            "bot_resolved"
        } else if c.first_resp_at.is_some() {
            "answered"
        } else if c.assigned_at.is_some() {
            "abandoned_after_assignment"
        } else {
            "lost"
        };
        let resolved = c.phase == Phase::Resolved;
        let agent_id = |a: Option<usize>| {
            a.and_then(|a| self.agents.get(a))
                .map(|a| a.truth_id.as_str())
        };
        let (channel, inbox, source) = match c.source {
            Source::Wa(i) => (
                "whatsapp",
                WA_INBOXES[usize::from(i) % WA_INBOXES.len()].phone_number_id,
                "agent_log",
            ),
            Source::Chatwoot => ("webchat", "7", "chatwoot"),
        };
        let row = ConvRow {
            id: &c.id,
            source,
            customer: &c.cust.canonical,
            channel,
            inbox,
            priority: c.queued_at.map(|_| c.priority.name()),
            started_at: c.started,
            queued_at: c.queued_at,
            assigned_at: c.assigned_at,
            first_response_at: c.first_resp_at,
            resolved_at: if resolved { c.resolved_at } else { None },
            outcome,
            team_first_response: c.first_resp_team.map(Team::name),
            agent_first_response: agent_id(c.first_resp_agent),
            team_resolved: if resolved {
                c.resolved_team.map(Team::name)
            } else {
                None
            },
            agent_resolved: if resolved {
                agent_id(c.resolved_agent)
            } else {
                None
            },
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            private_notes: c.notes,
            transfers: c.transfers,
            reopens: c.reopens,
            csat: c.csat,
        };
        self.truth.push(c.seq, &row);
    }

    // ---- Chatwoot rendering --------------------------------------------------------

    fn cw_state<'a>(&'a self, c: &'a Conv) -> ConvState<'a> {
        let handed = c.queued_at.is_some();
        ConvState {
            display_id: c.display_id,
            status: c.cw_status,
            priority: if handed { c.priority.chatwoot() } else { None },
            sender: ContactRef {
                id: c.cust.cw_contact_id,
                name: &c.cust.full_name,
                phone_number: &c.cust.canonical,
                kind: "contact",
            },
            assignee: c
                .cw_assignee
                .and_then(|a| self.agents.get(a))
                .map(|a| AssigneeRef {
                    id: a.cw_id,
                    name: &a.name,
                    kind: "user",
                }),
            team: c.team.filter(|_| handed).map(|t| TeamRef {
                id: t.chatwoot_id(),
                name: t.name(),
            }),
            created_at: c.started,
            last_activity: c.last_activity,
            updated_at: c.cw_updated,
            source_id: &c.cust.cw_source_id,
        }
    }

    fn cw_conv_event(
        &mut self,
        c: &mut Conv,
        event: &'static str,
        status: Option<(&'static str, &'static str)>,
        assignee: Option<(Option<u32>, Option<u32>)>,
        team: Option<(Option<u32>, Option<u32>)>,
    ) {
        let now = self.now;
        let previous = c.cw_updated;
        c.cw_updated = now;
        let rendered = {
            let prev_iso = rfc3339_millis(previous);
            let now_iso = rfc3339_millis(now);
            let mut changes: Vec<Change<'_>> = Vec::with_capacity(4);
            if let Some((p, n)) = status {
                changes.push(Change {
                    status: Some(PrevCur {
                        previous_value: p,
                        current_value: n,
                    }),
                    ..Change::default()
                });
            }
            if let Some((p, n)) = assignee {
                changes.push(Change {
                    assignee_id: Some(PrevCur {
                        previous_value: p,
                        current_value: n,
                    }),
                    ..Change::default()
                });
            }
            if let Some((p, n)) = team {
                changes.push(Change {
                    team_id: Some(PrevCur {
                        previous_value: p,
                        current_value: n,
                    }),
                    ..Change::default()
                });
            }
            let created = event == "conversation_created";
            if !created {
                changes.push(Change {
                    updated_at: Some(PrevCur {
                        previous_value: &prev_iso,
                        current_value: &now_iso,
                    }),
                    ..Change::default()
                });
            }
            let obj = self
                .cw_state(c)
                .into_object(Some(event), (!created).then_some(changes.as_slice()));
            serde_json::to_string(&obj)
        };
        self.out.chatwoot(now, rendered);
    }

    /// A `message_created` body.
    fn cw_message(
        &mut self,
        c: &mut Conv,
        message_type: &'static str,
        private: bool,
        who: Who,
        content: &str,
    ) {
        let now = self.now;
        c.cw_updated = now;
        let id = self.next_cw_message;
        self.next_cw_message += 1;
        let rendered = {
            let created = rfc3339_millis(now);
            let sender = match who {
                Who::Customer => Some(Sender::Contact(ContactRef {
                    id: c.cust.cw_contact_id,
                    name: &c.cust.full_name,
                    phone_number: &c.cust.canonical,
                    kind: "contact",
                })),
                Who::Bot => Some(chatwoot::bot_sender()),
                Who::Agent => c.agent.and_then(|a| self.agents.get(a)).map(|a| {
                    Sender::User(UserSender {
                        id: a.cw_id,
                        name: &a.name,
                        email: &a.email,
                        kind: "user",
                    })
                }),
            };
            let conv = self.cw_state(c).into_object(None, None);
            let mut m = MessageEvent::new(
                "message_created",
                id,
                content,
                &created,
                message_type,
                sender,
                conv,
            );
            m.private = private;
            serde_json::to_string(&m)
        };
        self.out.chatwoot(now, rendered);
    }

    // ---- agents and shifts -----------------------------------------------------------

    fn set_status(&mut self, a: usize, status: AgentStatus, reason: &'static str) {
        let now = self.now;
        let ag = &mut self.agents[a];
        if ag.pool == 0 {
            if let Some(from) = ag.since {
                self.truth.status_rows.push(StatusRow {
                    agent_id: ag.truth_id.clone(),
                    from,
                    to: now,
                    status: ag.status.name(),
                    reason: ag.reason,
                });
            }
            let rendered = {
                let ts = rfc3339(now);
                let mut l = Line::new(&ts, "agent.status");
                l.agent_id = Some(&ag.truth_id);
                l.team = Some(ag.team.name());
                l.status = Some(status.name());
                if !reason.is_empty() {
                    l.reason = Some(reason);
                }
                agent_log::render(&l)
            };
            self.out.agent_log(now, rendered);
        }
        let ag = &mut self.agents[a];
        ag.status = status;
        ag.reason = reason;
        ag.since = Some(now);
    }

    /// Lays out the day's shifts and pauses (local time) for every agent.
    fn plan_day(&mut self, d: u32) {
        let Some(date) = self.start_date.checked_add_days(Days::new(u64::from(d))) else {
            return;
        };
        let wd = clock::weekday_of(date);
        let week = (d / 7) as usize;
        for a in 0..self.agents.len() {
            let (pool, team, shift, rank) = {
                let ag = &self.agents[a];
                (ag.pool, ag.team, ag.shift, ag.rank)
            };
            let template: &ShiftTemplate = match wd {
                0..=4 => &WEEKDAY_SHIFTS[shift % WEEKDAY_SHIFTS.len()],
                5 => {
                    let n = self.team_agents[pool][team.index()].len().max(1);
                    let staff = self.saturday_staff[pool][team.index()];
                    if (rank + week * staff) % n >= staff {
                        continue;
                    }
                    &SATURDAY_SHIFT
                }
                _ => continue,
            };
            let (Some(start), Some(end)) = (
                clock::local_to_utc(self.tz, date, template.start),
                clock::local_to_utc(self.tz, date, template.end),
            ) else {
                continue;
            };
            // People log in a little early or late and leave a little late.
            let start = start + self.rng.int(-6 * MINUTE, 8 * MINUTE);
            let end = end + self.rng.int(-2 * MINUTE, 6 * MINUTE);
            let long = end - start > 5 * HOUR;
            let pause = if long {
                match self.rng.weighted(&[0.62, 0.28, 0.10]) {
                    0 => Some(("break", self.rng.int(12 * MINUTE, 18 * MINUTE))),
                    1 => Some(("lunch", self.rng.int(40 * MINUTE, 62 * MINUTE))),
                    _ => Some(("training", self.rng.int(30 * MINUTE, 60 * MINUTE))),
                }
            } else if self.rng.chance(0.5) {
                Some(("break", self.rng.int(8 * MINUTE, 12 * MINUTE)))
            } else {
                None
            };
            self.schedule(
                start,
                Ev::Shift {
                    agent: a,
                    what: ShiftEv::Start,
                },
            );
            if let Some((reason, len)) = pause {
                let margin = if long { 90 * MINUTE } else { 60 * MINUTE };
                let p0 = self.rng.int(start + margin, end - margin - len);
                self.schedule(
                    p0,
                    Ev::Shift {
                        agent: a,
                        what: ShiftEv::PauseStart(reason),
                    },
                );
                self.schedule(
                    p0 + len,
                    Ev::Shift {
                        agent: a,
                        what: ShiftEv::PauseEnd,
                    },
                );
            }
            self.schedule(
                end,
                Ev::Shift {
                    agent: a,
                    what: ShiftEv::End,
                },
            );
        }
    }

    fn shift(&mut self, a: usize, what: ShiftEv) {
        let (pool, team) = (self.agents[a].pool, self.agents[a].team);
        let bit = 1 << (pool * 3 + team.index());
        match what {
            ShiftEv::Start => {
                self.agents[a].shift_over = false;
                self.set_status(a, AgentStatus::Available, "");
                self.dirty |= bit;
            }
            ShiftEv::PauseStart(reason) => {
                if self.agents[a].status == AgentStatus::Available && !self.agents[a].shift_over {
                    self.set_status(a, AgentStatus::Paused, reason);
                }
            }
            ShiftEv::PauseEnd => {
                if self.agents[a].status == AgentStatus::Paused && !self.agents[a].shift_over {
                    self.set_status(a, AgentStatus::Available, "");
                    self.dirty |= bit;
                }
            }
            ShiftEv::End => {
                self.agents[a].shift_over = true;
                if self.agents[a].load == 0 {
                    self.set_status(a, AgentStatus::Offline, "");
                } else {
                    // Still holding conversations: no new ones, finish these, then leave.
                    self.set_status(a, AgentStatus::Paused, "wrap_up");
                }
            }
        }
    }
}

/// Whether the customer is still waiting for a first human word in this wait.
fn waiting(c: &Conv) -> bool {
    c.phase == Phase::Queued || (c.phase == Phase::Assigned && !c.seg_replied)
}

/// An agent-log conversation line with what the platform knows about where the
/// conversation is.
fn conv_line<'a>(ts: &'a str, kind: &'static str, c: &'a Conv) -> Line<'a> {
    let mut l = Line::new(ts, kind);
    l.conversation_id = Some(&c.id);
    l.channel = Some("whatsapp");
    if let Source::Wa(i) = c.source {
        l.inbox = Some(WA_INBOXES[usize::from(i) % WA_INBOXES.len()].phone_number_id);
    }
    if c.queued_at.is_some() {
        l.team = c.team.map(Team::name);
        l.priority = Some(c.priority.name());
    }
    l
}
