// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Consortium} from "./Consortium.sol";

/// @title FedLedger
/// @notice Runs federated-learning rounds for the members of a consortium: collects one update
///         hash per member per round, elects the leader that aggregates and the verifiers that
///         re-check it, fails over to the next candidate when a leader is silent or rejected, and
///         records the hash of every global model. Weights never touch the chain: every per-member
///         cost is constant in model size, and no per-round cost grows with the square of members.
/// @dev    Nobody chooses the leader: every update commits to a fresh secret and opens the one the
///         member committed to before (commit-reveal, one step ahead). The election seed is the
///         XOR of the secrets opened in the round, each fixed before the round opened, so no
///         submitter, block proposer or coalition can choose it by changing its inputs; the last
///         submitter can only decide whether to take part. A round in which nobody had a secret to
///         open (round 1) reveals the new ones in a reveal phase once the window has closed; a
///         member that does not reveal is left out of the round (RevealMissed).
/// @dev Events are the lineage record: each carries task, round, epoch, attempt, member/leader,
///      cid, sha256 and parent as they apply, so an auditor needs no extra calls.
contract FedLedger is Consortium {
    /// @notice Where a round stands. `Finalized` rounds are history; the task has moved on.
    enum Phase {
        None,
        Submission,
        Reveal,
        Aggregation,
        Verification,
        Finalized
    }

    /// @notice Why a leader attempt ended without a global model. LeaderTimeout and Rejected (a
    ///         quorum of verifiers disagreed) count against the leader; Unverified (the verifiers
    ///         were silent) and Disputed (neither side reached the quorum) do not.
    enum FailReason {
        LeaderTimeout,
        Rejected,
        Unverified,
        Disputed
    }

    uint256 public constant MAX_PARTICIPANTS = 1024;
    uint256 public constant MAX_VERIFIERS = 16;
    uint256 public constant MAX_CID_BYTES = 128;
    /// @notice The largest sample count a task may allow per update: no sum of claims can overflow.
    uint256 public constant MAX_SAMPLES_LIMIT = 2 ** 32;
    /// @dev The bit of Round.slotOf saying the member's secret is in the round's seed (participant
    ///      indices stay below 2^16).
    uint256 internal constant REVEALED = 1 << 16;

    /// @notice Everything fixed about a task at creation.
    struct TaskConfig {
        string modelSpecCid;
        string genesisCid;
        bytes32 genesisSha256;
        bytes32 ruleId;
        bytes ruleParams;
        uint16 minParticipants;
        uint16 maxParticipants;
        uint32 submissionWindow;
        uint32 aggregationWindow;
        uint32 verificationWindow;
        uint16 verifiersPerRound;
        uint16 quorum;
        uint32 maxRounds;
        uint64 maxSamples;
        uint32 revealWindow;
    }

    struct TaskState {
        bool completed;
        bool cancelled; // completed by cancelTask, not by running all its rounds
        uint32 currentRound;
        bytes32 globalSha256;
    }

    /// @dev A task keeps two Round records and round r lives in record r % 2: round r + 1 reuses
    ///      the slots of round r - 1, so every write of a steady-state round turns a non-zero slot
    ///      into another non-zero value (about 5k gas) instead of claiming a fresh one (22k).
    ///      Older rounds live on in the event log, which is the lineage record anyway.
    struct Round {
        // One slot: everything a submit or an attest reads and writes.
        Phase phase;
        uint16 epoch;
        uint16 attempt;
        uint16 count;
        // Bit j: verifier j of this attempt agreed. Before the first attempt the same bits count the
        // participants whose secret is in the seed: one slot for everything a submit writes.
        uint16 agreeMask;
        uint16 disagreeMask; // bit j: verifier j of this attempt disagreed
        uint16 offset;
        uint16 step;
        uint40 deadline;
        uint32 round; // which round this record holds now
        uint64 totalSamples;
        bytes32 inputsDigest;
        bytes32 seed;
        bytes32 aggSha256;
        string aggCid;
        bytes32 revealAcc; // keccak256(abi.encode(task, round, parent)) XOR the secrets opened in the round
        bytes32 includedHash; // keccak256(included bitmap, unavailable bitmap) of the publication
        mapping(uint256 => address) participantAt;
        // (round << 32) | (REVEALED if the member's secret is in the seed) | (index + 1). A member
        // opens at most one secret per round, so one bit says it; it costs no slot of its own.
        mapping(address => uint256) slotOf;
    }

    /// @notice A read-only snapshot of a round, for nodes and auditors.
    struct RoundView {
        Phase phase;
        uint16 epoch;
        uint16 attempt;
        uint16 count;
        uint16 agrees;
        uint16 disagrees;
        uint64 deadline;
        uint64 totalSamples;
        bytes32 seed;
        bytes32 inputsDigest;
        bytes32 aggSha256;
        string aggCid;
        address leader;
        uint16 reveals; // participants whose secret is in the seed (submission and reveal phases)
        bytes32 includedHash;
    }

    /// @notice Number of tasks created; task ids are 0 .. taskCount-1.
    uint256 public taskCount;
    /// @notice How many leader attempts each member has lost by timeout or rejection.
    mapping(address => uint256) public failedLeaderships;
    /// @notice How many of each member's updates a leader declared it could not fetch in time.
    mapping(address => uint256) public withheldUpdates;
    /// @notice How many rounds each member left out by not revealing its secret.
    mapping(address => uint256) public missedReveals;
    /// @notice The commitment keccak256(abi.encode(secret, member)) each member's next update (or
    ///         reveal) of a task must open; zero before its first.
    mapping(uint256 => mapping(address => bytes32)) public pendingCommitment;

    mapping(uint256 => TaskConfig) internal _config;
    mapping(uint256 => TaskState) internal _state;
    mapping(uint256 => mapping(uint256 => Round)) internal _rounds; // task => round % 2 => record

    /// @notice A task was created; round 1 opens in the same transaction.
    event TaskCreated(uint256 indexed task, address indexed creator, TaskConfig config);
    /// @notice Round `round` of `task` accepts updates on top of `parent` until `deadline`.
    event RoundOpened(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 parent, uint64 deadline);
    /// @notice `member` submitted an update (`cid`, `sha256`) trained on `numSamples` samples from
    ///         `parent`, opening `secret` (zero: it had no commitment) and committing to the next.
    event UpdateSubmitted(
        uint256 indexed task,
        uint256 indexed round,
        address indexed member,
        uint16 epoch,
        bytes32 parent,
        string cid,
        bytes32 sha256,
        uint64 numSamples,
        bytes32 commitment,
        bytes32 secret
    );
    /// @notice The submission window closed with `participants` updates committing to `inputsDigest`;
    ///         their members reveal their secrets before `revealDeadline` (0: no reveal, a reopened round).
    event SubmissionsClosed(
        uint256 indexed task,
        uint256 indexed round,
        uint16 epoch,
        uint16 participants,
        uint64 totalSamples,
        bytes32 inputsDigest,
        uint64 revealDeadline
    );
    /// @notice `member` revealed the secret its update committed to, and committed to its next.
    event SecretRevealed(
        uint256 indexed task, uint256 indexed round, address indexed member, uint16 epoch, bytes32 secret,
        bytes32 nextCommitment
    );
    /// @notice `member` did not reveal in time: its update is left out of the round.
    event RevealMissed(uint256 indexed task, uint256 indexed round, address indexed member, uint16 epoch);
    /// @notice The election seed of the epoch, from the secrets opened in the round; it fixes the
    ///         candidate order over the round's `participants`, in submission order.
    event SeedDrawn(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 seed, uint16 participants);
    /// @notice `leader` must publish the aggregate of attempt `attempt` before `deadline`; `verifiers` re-check it.
    event LeaderElected(
        uint256 indexed task,
        uint256 indexed round,
        address indexed leader,
        uint16 epoch,
        uint16 attempt,
        address[] verifiers,
        uint64 deadline
    );
    /// @notice `leader` published the aggregate (`cid`, `sha256`) of `parent`'s round under `ruleId`.
    event AggregatePublished(
        uint256 indexed task,
        uint256 indexed round,
        address indexed leader,
        uint16 epoch,
        uint16 attempt,
        bytes32 parent,
        string cid,
        bytes32 sha256,
        bytes32 ruleId
    );
    /// @notice The aggregate of `attempt` was built from the participants set in `included` (bit i:
    ///         participant i, in submission order, byte i / 8, bit i % 8); those set in `unavailable`
    ///         the leader declared it could not fetch in time. Emitted right after AggregatePublished.
    event UpdatesIncluded(uint256 indexed task, uint256 indexed round, uint16 epoch, uint16 attempt, bytes included, bytes unavailable);
    /// @notice `leader` declared the update of `member` unavailable to it: recorded against `member`.
    event UpdateWithheld(uint256 indexed task, uint256 indexed round, address indexed member, address leader);
    /// @notice `verifier` recomputed the aggregate of `attempt` and got `computedSha256`; `agree` is its verdict.
    event Attested(
        uint256 indexed task,
        uint256 indexed round,
        address indexed verifier,
        uint16 epoch,
        uint16 attempt,
        bool agree,
        bytes32 computedSha256
    );
    /// @notice Attempt `attempt` under `leader` produced no global model, for `reason`.
    event AttemptFailed(
        uint256 indexed task, uint256 indexed round, address indexed leader, uint16 epoch, uint16 attempt, FailReason reason
    );
    /// @notice Every candidate failed; the round accepts updates again on the same parent, keeping those it has.
    event RoundReopened(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 parent, uint64 deadline);
    /// @notice The aggregate of `attempt` is the new global model (`cid`, `sha256`), child of `parent`.
    event RoundFinalized(
        uint256 indexed task,
        uint256 indexed round,
        address indexed leader,
        uint16 epoch,
        uint16 attempt,
        bytes32 parent,
        string cid,
        bytes32 sha256,
        bytes32 ruleId
    );
    /// @notice The task ran `rounds` rounds; `finalSha256` is its last global model.
    event TaskCompleted(uint256 indexed task, uint256 rounds, bytes32 finalSha256);
    /// @notice The admin (after bootstrap: a vote of the members) changed `task`'s participant
    ///         bounds, windows and round count during the submission phase of `round`; they apply
    ///         from then on (the running window keeps its deadline).
    event TaskUpdated(
        uint256 indexed task,
        uint256 round,
        uint16 minParticipants,
        uint16 maxParticipants,
        uint32 submissionWindow,
        uint32 aggregationWindow,
        uint32 verificationWindow,
        uint32 revealWindow,
        uint32 maxRounds
    );
    /// @notice The admin (after bootstrap: a vote of the members) cancelled `task` during `round`,
    ///         which ends unfinalized; `finalSha256` (from round - 1) stays its last global model.
    event TaskCancelled(uint256 indexed task, uint256 round, bytes32 finalSha256, address indexed by);

    /// @notice No task has id `task`.
    error UnknownTask(uint256 task);
    /// @notice The task has run all its rounds.
    error TaskAlreadyCompleted(uint256 task);
    /// @notice The call names round `given`, but the task is in round `expected`.
    error WrongRound(uint256 task, uint256 expected, uint256 given);
    /// @notice The round is in phase `actual`; the call needs `expected`.
    error WrongPhase(uint256 task, uint256 round, Phase expected, Phase actual);
    /// @notice The update was trained from `given`, not from the current global model `expected`.
    error StaleParent(uint256 task, uint256 round, bytes32 expected, bytes32 given);
    /// @notice `member` already submitted an update in this round.
    error DuplicateUpdate(uint256 task, uint256 round, address member);
    /// @notice The round already holds `maxParticipants` updates.
    error RoundFull(uint256 task, uint256 round, uint256 maxParticipants);
    /// @notice The round holds `have` updates and needs `need` before it can close.
    error NotEnoughParticipants(uint256 task, uint256 round, uint256 have, uint256 need);
    /// @notice The deadline `deadline` has not passed yet (block time `nowTs`).
    error TooEarly(uint256 task, uint256 round, uint256 deadline, uint256 nowTs);
    /// @notice The deadline `deadline` has passed (block time `nowTs`).
    error TooLate(uint256 task, uint256 round, uint256 deadline, uint256 nowTs);
    /// @notice Only `leader` may publish in this attempt.
    error NotLeader(uint256 task, uint256 round, address leader, address caller);
    /// @notice `caller` is not among the verifiers of `attempt`.
    error NotVerifier(uint256 task, uint256 round, uint256 attempt, address caller);
    /// @notice The call names attempt `given`; the round is in attempt `expected`.
    error WrongAttempt(uint256 task, uint256 round, uint256 expected, uint256 given);
    /// @notice Only the current and the previous round are kept in storage; older rounds are in the event log.
    error RoundNotStored(uint256 task, uint256 round);
    /// @notice `verifier` already attested in `attempt`.
    error AlreadyAttested(uint256 task, uint256 round, uint256 attempt, address verifier);
    /// @notice The update claims `given` samples; the task allows at most `max` per update.
    error TooManySamples(uint256 task, uint256 round, uint256 given, uint256 max);
    /// @notice `member` is not a participant of the round that still has to reveal in this epoch.
    error NotRevealing(uint256 task, uint256 round, address member);
    /// @notice The secret does not open `member`'s pending commitment (or there is none to open).
    error BadReveal(uint256 task, uint256 round, address member);
    /// @notice An agreement must name the published aggregate `published`; it named `given`.
    error AgreementMismatch(uint256 task, uint256 round, bytes32 published, bytes32 given);
    /// @notice The included/unavailable bitmaps do not describe the round's `participants`.
    error BadInclusion(uint256 task, uint256 round, uint256 participants);

    // ------------------------------------------------------------------ tasks

    /// @notice Create a federated training task and open its round 1 on the genesis model.
    ///         Admin only. Emits TaskCreated and RoundOpened.
    /// @return task The new task's id.
    function createTask(TaskConfig calldata cfg) external onlyOwner returns (uint256 task) {
        _checkConfig(cfg);
        task = taskCount;
        taskCount = task + 1;
        _config[task] = cfg;
        TaskState storage st = _state[task];
        st.currentRound = 1;
        st.globalSha256 = cfg.genesisSha256;
        emit TaskCreated(task, msg.sender, cfg);
        _openRound(task, 1, st);
    }

    /// @notice End `task` now, with the round in progress unfinalized (a task whose rounds can no
    ///         longer finish, or that the consortium no longer wants). Its last global model stays
    ///         the one finalized before. Admin only. Emits TaskCancelled.
    function cancelTask(uint256 task) external onlyOwner {
        _requireTask(task);
        TaskState storage st = _state[task];
        if (st.completed) revert TaskAlreadyCompleted(task);
        st.completed = true;
        st.cancelled = true;
        emit TaskCancelled(task, st.currentRound, st.globalSha256, msg.sender);
    }

    /// @notice Change how many participants `task`'s rounds take, its windows and how many rounds
    ///         it runs: a round that cannot close (too few members left for minParticipants) closes
    ///         again. Admin only, and only while the current round accepts updates: what a round
    ///         already decided (its participants, leader, verifiers, quorum, rule) never changes.
    ///         The rule, its parameters, the verifiers and the quorum stay as created. Emits TaskUpdated.
    function updateTask(
        uint256 task,
        uint16 minParticipants,
        uint16 maxParticipants,
        uint32 submissionWindow,
        uint32 aggregationWindow,
        uint32 verificationWindow,
        uint32 revealWindow,
        uint32 maxRounds
    ) external onlyOwner {
        _requireTask(task);
        TaskState storage st = _state[task];
        if (st.completed) revert TaskAlreadyCompleted(task);
        Round storage rd = _round(task, st.currentRound);
        if (rd.phase != Phase.Submission) revert WrongPhase(task, st.currentRound, Phase.Submission, rd.phase);
        TaskConfig storage cfg = _config[task];
        if (minParticipants == 0 || minParticipants <= cfg.verifiersPerRound) {
            revert InvalidArgument("minParticipants must exceed verifiersPerRound");
        }
        if (maxParticipants < minParticipants || maxParticipants > MAX_PARTICIPANTS || maxParticipants < rd.count) {
            revert InvalidArgument("maxParticipants out of range");
        }
        if (submissionWindow == 0 || aggregationWindow == 0 || verificationWindow == 0 || revealWindow == 0) {
            revert InvalidArgument("windows must be at least 1 second");
        }
        if (maxRounds < st.currentRound) revert InvalidArgument("maxRounds below the current round");
        cfg.minParticipants = minParticipants;
        cfg.maxParticipants = maxParticipants;
        cfg.submissionWindow = submissionWindow;
        cfg.aggregationWindow = aggregationWindow;
        cfg.verificationWindow = verificationWindow;
        cfg.revealWindow = revealWindow;
        cfg.maxRounds = maxRounds;
        emit TaskUpdated(task, st.currentRound, minParticipants, maxParticipants, submissionWindow, aggregationWindow,
            verificationWindow, revealWindow, maxRounds);
        if (rd.count == maxParticipants) _closeWindow(task, st.currentRound, rd, cfg);
    }

    function _checkConfig(TaskConfig calldata cfg) internal pure {
        if (bytes(cfg.modelSpecCid).length == 0 || bytes(cfg.modelSpecCid).length > MAX_CID_BYTES) {
            revert InvalidArgument("modelSpecCid must be 1-128 bytes");
        }
        if (bytes(cfg.genesisCid).length == 0 || bytes(cfg.genesisCid).length > MAX_CID_BYTES) {
            revert InvalidArgument("genesisCid must be 1-128 bytes");
        }
        if (cfg.genesisSha256 == bytes32(0)) revert InvalidArgument("genesisSha256 is zero");
        if (cfg.ruleId == bytes32(0)) revert InvalidArgument("ruleId is empty");
        if (cfg.ruleParams.length > 1024) revert InvalidArgument("ruleParams exceed 1024 bytes");
        if (cfg.minParticipants == 0) revert InvalidArgument("minParticipants must be at least 1");
        if (cfg.maxParticipants < cfg.minParticipants) revert InvalidArgument("maxParticipants < minParticipants");
        if (cfg.maxParticipants > MAX_PARTICIPANTS) revert InvalidArgument("maxParticipants exceeds 1024");
        if (cfg.submissionWindow == 0 || cfg.aggregationWindow == 0 || cfg.verificationWindow == 0) {
            revert InvalidArgument("windows must be at least 1 second");
        }
        if (cfg.verifiersPerRound > MAX_VERIFIERS) revert InvalidArgument("verifiersPerRound exceeds 16");
        if (cfg.quorum > cfg.verifiersPerRound) revert InvalidArgument("quorum exceeds verifiersPerRound");
        if (cfg.verifiersPerRound > 0 && uint256(cfg.quorum) * 2 <= cfg.verifiersPerRound) {
            revert InvalidArgument("quorum must be a majority of verifiersPerRound");
        }
        // A round never closes with fewer participants than its leader and verifiers: verification
        // cannot shrink below what the task asked for.
        if (cfg.minParticipants <= cfg.verifiersPerRound) revert InvalidArgument("minParticipants must exceed verifiersPerRound");
        if (cfg.maxRounds == 0) revert InvalidArgument("maxRounds must be at least 1");
        if (cfg.maxSamples == 0 || cfg.maxSamples > MAX_SAMPLES_LIMIT) revert InvalidArgument("maxSamples must be 1-2^32");
        if (cfg.revealWindow == 0) revert InvalidArgument("revealWindow must be at least 1 second");
    }

    // ----------------------------------------------------------------- rounds

    /// @notice Submit this member's update for `round`, trained from the current global model
    ///         `parent`. One per member per round. Members only. Emits UpdateSubmitted. The update
    ///         that fills the round (the maxParticipants-th) also closes the window and elects, as
    ///         closeSubmissions would: SubmissionsClosed and LeaderElected come in the same transaction.
    /// @param cid Where the update's safetensors bytes are on IPFS.
    /// @param sha256Hash The sha256 of exactly those bytes.
    /// @param numSamples How many training samples the update saw (its FedAvg weight), at most the
    ///        task's maxSamples.
    /// @param commitment keccak256(abi.encode(secret, msg.sender)) of a fresh 32-byte secret: the
    ///        member's next update (or its reveal, in a round without secrets to open) opens it.
    /// @param secret Opens the member's pendingCommitment, made before this round opened: it goes
    ///        into the election seed. Zero when the member has none (its first update of the task).
    function submitUpdate(
        uint256 task,
        uint256 round,
        bytes32 parent,
        string calldata cid,
        bytes32 sha256Hash,
        uint64 numSamples,
        bytes32 commitment,
        bytes32 secret
    ) external onlyMember {
        Round storage rd = _admit(task, round, parent, numSamples);
        if (bytes(cid).length == 0 || bytes(cid).length > MAX_CID_BYTES) revert InvalidArgument("cid must be 1-128 bytes");
        if (sha256Hash == bytes32(0)) revert InvalidArgument("sha256 is zero");
        _enter(rd, round, sha256Hash, numSamples, _open(task, round, secret, commitment) ? secret : bytes32(0));
        emit UpdateSubmitted(task, round, msg.sender, rd.epoch, parent, cid, sha256Hash, numSamples, commitment, secret);
        if (rd.count == _config[task].maxParticipants) _closeWindow(task, round, rd, _config[task]);
    }

    /// @dev Record the sender as the round's next participant; a non-zero `opened` secret goes into the seed.
    function _enter(Round storage rd, uint256 round, bytes32 sha256Hash, uint64 numSamples, bytes32 opened) internal {
        uint16 count = rd.count;
        rd.participantAt[count] = msg.sender;
        rd.slotOf[msg.sender] = (round << 32) | (opened != bytes32(0) ? REVEALED : 0) | (uint256(count) + 1);
        rd.count = count + 1;
        rd.totalSamples += numSamples;
        rd.inputsDigest = keccak256(abi.encode(rd.inputsDigest, msg.sender, sha256Hash, numSamples));
        if (opened != bytes32(0)) {
            rd.revealAcc ^= opened;
            rd.agreeMask += 1; // participants whose secret is in the seed
        }
    }

    /// @dev Open the sender's pending commitment with `secret` (true) or, without one, check that
    ///      `secret` is zero (false); either way `next` becomes the pending commitment.
    function _open(uint256 task, uint256 round, bytes32 secret, bytes32 next) internal returns (bool opened) {
        if (next == bytes32(0)) revert InvalidArgument("commitment is zero");
        bytes32 pending = pendingCommitment[task][msg.sender];
        opened = pending != bytes32(0);
        if (opened ? keccak256(abi.encode(secret, msg.sender)) != pending : secret != bytes32(0)) {
            revert BadReveal(task, round, msg.sender);
        }
        pendingCommitment[task][msg.sender] = next;
    }

    /// @dev The checks of a submission that need the round: live task, phase, parent, one update
    ///      per member, room left, a sample count the task allows.
    function _admit(uint256 task, uint256 round, bytes32 parent, uint64 numSamples) internal view returns (Round storage rd) {
        TaskState storage st = _liveTask(task, round);
        rd = _round(task, round);
        if (rd.phase != Phase.Submission) revert WrongPhase(task, round, Phase.Submission, rd.phase);
        if (parent != st.globalSha256) revert StaleParent(task, round, st.globalSha256, parent);
        if (rd.slotOf[msg.sender] >> 32 == round) revert DuplicateUpdate(task, round, msg.sender);
        TaskConfig storage cfg = _config[task];
        if (rd.count >= cfg.maxParticipants) revert RoundFull(task, round, cfg.maxParticipants);
        if (numSamples == 0) revert InvalidArgument("numSamples is zero");
        if (numSamples > cfg.maxSamples) revert TooManySamples(task, round, numSamples, cfg.maxSamples);
    }

    /// @notice Close the submission window and elect from the secrets the participants opened; in a
    ///         round where none had one to open, the participants now reveal the secrets their
    ///         updates committed to (reveal phase). Anyone may call,
    ///         once the deadline passed with at least minParticipants updates (a round with
    ///         maxParticipants updates closed itself). Emits SubmissionsClosed (and, in a reopened
    ///         round, SeedDrawn and LeaderElected).
    function closeSubmissions(uint256 task, uint256 round) external {
        _liveTask(task, round);
        Round storage rd = _round(task, round);
        if (rd.phase != Phase.Submission) revert WrongPhase(task, round, Phase.Submission, rd.phase);
        TaskConfig storage cfg = _config[task];
        uint16 n = rd.count;
        if (n < cfg.maxParticipants) {
            if (block.timestamp < rd.deadline) revert TooEarly(task, round, rd.deadline, block.timestamp);
            if (n < cfg.minParticipants) revert NotEnoughParticipants(task, round, n, cfg.minParticipants);
        }
        _closeWindow(task, round, rd, cfg);
    }

    function _closeWindow(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg) internal {
        if (rd.epoch == 0 && rd.agreeMask == 0) {
            // Nobody had a secret to open (round 1): reveal the ones the updates committed to.
            rd.phase = Phase.Reveal;
            rd.deadline = uint40(block.timestamp + cfg.revealWindow);
            emit SubmissionsClosed(task, round, 0, rd.count, rd.totalSamples, rd.inputsDigest, rd.deadline);
        } else {
            // Every secret in the seed was fixed before the round opened. A reopened round keeps
            // its updates and its secrets, and adds those of members that join it.
            emit SubmissionsClosed(task, round, rd.epoch, rd.count, rd.totalSamples, rd.inputsDigest, 0);
            _draw(task, round, rd, cfg, _seedOf(task, round, rd));
        }
    }

    /// @dev The election seed of the round's current epoch.
    function _seedOf(uint256 task, uint256 round, Round storage rd) internal view returns (bytes32) {
        return keccak256(abi.encode(rd.revealAcc, task, round, rd.epoch));
    }

    /// @notice Reveal the secret this member's update committed to, committing to the next one
    ///         (`nextCommitment`, which its next update opens). Participants of the round only
    ///         (WrongRound, WrongPhase, NotRevealing otherwise), once, before the reveal deadline.
    ///         Emits SecretRevealed; the last reveal also draws the seed and elects (SeedDrawn,
    ///         LeaderElected).
    function reveal(uint256 task, uint256 round, bytes32 secret, bytes32 nextCommitment) external {
        // Cheaper than _liveTask, and as strict: the record must hold this round in its reveal phase
        // (an unknown task's record is empty; a completed task's last round is Finalized). A member
        // removed since it submitted may still reveal: removal never strands a round in progress.
        Round storage rd = _round(task, round);
        if (rd.round != round) revert WrongRound(task, rd.round, round);
        if (rd.phase != Phase.Reveal) revert WrongPhase(task, round, Phase.Reveal, rd.phase);
        uint256 slot = rd.slotOf[msg.sender];
        if (slot >> 32 != round || slot & REVEALED != 0) revert NotRevealing(task, round, msg.sender);
        if (block.timestamp > rd.deadline) revert TooLate(task, round, rd.deadline, block.timestamp);
        // The member's pending commitment is the one its update of this round made.
        if (!_open(task, round, secret, nextCommitment)) revert BadReveal(task, round, msg.sender);
        rd.slotOf[msg.sender] = slot | REVEALED;
        rd.revealAcc ^= secret;
        uint16 reveals = rd.agreeMask + 1;
        rd.agreeMask = reveals;
        emit SecretRevealed(task, round, msg.sender, rd.epoch, secret, nextCommitment);
        if (reveals == rd.count) _draw(task, round, rd, _config[task], _seedOf(task, round, rd));
    }

    /// @notice End the reveal phase once its deadline passed: the participants that did not reveal
    ///         are left out of the round (RevealMissed, counted in missedReveals) and the others
    ///         elect; with fewer than minParticipants left the round reopens. Anyone may call.
    function closeReveals(uint256 task, uint256 round) external {
        _liveTask(task, round);
        Round storage rd = _round(task, round);
        if (rd.phase != Phase.Reveal) revert WrongPhase(task, round, Phase.Reveal, rd.phase);
        if (block.timestamp <= rd.deadline) revert TooEarly(task, round, rd.deadline, block.timestamp);
        uint256 kept = 0;
        uint256 n = rd.count;
        // Bounded by maxParticipants, and only on this rare path: the revealers keep their order.
        for (uint256 i = 0; i < n; i++) {
            address member = rd.participantAt[i];
            if (rd.slotOf[member] & REVEALED != 0) {
                rd.participantAt[kept] = member;
                rd.slotOf[member] = (round << 32) | REVEALED | (kept + 1);
                kept++;
            } else {
                rd.slotOf[member] = 0;
                missedReveals[member] += 1;
                emit RevealMissed(task, round, member, rd.epoch);
            }
        }
        rd.count = uint16(kept);
        TaskConfig storage cfg = _config[task];
        if (kept < cfg.minParticipants) {
            _reopen(task, round, rd, cfg);
        } else {
            _draw(task, round, rd, cfg, _seedOf(task, round, rd));
        }
    }

    function _draw(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg, bytes32 seed) internal {
        uint16 n = rd.count;
        rd.seed = seed;
        rd.offset = uint16(uint256(seed) % n);
        rd.step = uint16(coprimeStep(uint256(keccak256(abi.encode(seed))), n));
        rd.attempt = 0;
        emit SeedDrawn(task, round, rd.epoch, seed, n);
        _startAttempt(task, round, rd, cfg);
    }

    /// @notice Publish the aggregate of this attempt and exactly which updates went in. The current
    ///         leader only (even if removed from the consortium since it submitted), before its deadline. Emits AggregatePublished (and UpdateWithheld for each
    ///         update declared unavailable), and RoundFinalized when the task has no verifiers.
    /// @param included Bit i (byte i / 8, bit i % 8) set: participant i's update is in the aggregate.
    /// @param unavailable Bit i set: the leader could not fetch participant i's update in time.
    function publishAggregate(
        uint256 task,
        uint256 round,
        uint256 attempt,
        string calldata cid,
        bytes32 sha256Hash,
        bytes calldata included,
        bytes calldata unavailable
    ) external {
        (Round storage rd, address leader) = _publish(task, round, attempt, cid, sha256Hash);
        _checkInclusion(task, round, rd, included, unavailable);
        rd.includedHash = keccak256(abi.encode(included, unavailable));
        emit UpdatesIncluded(task, round, rd.epoch, rd.attempt, included, unavailable);
        _recordWithheld(task, round, rd, unavailable, leader);
        TaskConfig storage cfg = _config[task];
        if (_verifierCount(cfg, rd.count) == 0) {
            _finalize(task, round, rd, cfg, leader);
        } else {
            rd.phase = Phase.Verification;
            rd.deadline = uint40(block.timestamp + cfg.verificationWindow);
        }
    }

    function _publish(uint256 task, uint256 round, uint256 attempt, string calldata cid, bytes32 sha256Hash)
        internal
        returns (Round storage rd, address leader)
    {
        _liveTask(task, round);
        rd = _round(task, round);
        if (rd.phase != Phase.Aggregation) revert WrongPhase(task, round, Phase.Aggregation, rd.phase);
        if (attempt != rd.attempt) revert WrongAttempt(task, round, rd.attempt, attempt);
        leader = _candidate(rd, rd.attempt);
        if (msg.sender != leader) revert NotLeader(task, round, leader, msg.sender);
        if (block.timestamp > rd.deadline) revert TooLate(task, round, rd.deadline, block.timestamp);
        if (bytes(cid).length == 0 || bytes(cid).length > MAX_CID_BYTES) revert InvalidArgument("cid must be 1-128 bytes");
        if (sha256Hash == bytes32(0)) revert InvalidArgument("sha256 is zero");
        rd.aggSha256 = sha256Hash;
        rd.aggCid = cid;
        _emitPublished(task, round, rd, leader);
    }

    function _emitPublished(uint256 task, uint256 round, Round storage rd, address leader) internal {
        emit AggregatePublished(
            task, round, leader, rd.epoch, rd.attempt, _state[task].globalSha256, rd.aggCid, rd.aggSha256, _config[task].ruleId
        );
    }

    /// @notice Attest to the published aggregate of `attempt` after recomputing it.
    ///         Verifiers of this attempt only (removed members included), once each, before the verification deadline.
    ///         Emits Attested; then RoundFinalized on a quorum of agreement, or AttemptFailed
    ///         (and the next LeaderElected) once the quorum can no longer be reached.
    /// @param agree Whether the recomputed aggregate matches (bit for bit, or within the rule's
    ///        tolerance) and was built from exactly the updates it should have been.
    /// @param computedSha256 With agree: the published aggregate it agrees with (anything else reverts
    ///        AgreementMismatch). Without: the sha256 of its own recomputation, kept for the audit.
    function attest(uint256 task, uint256 round, uint256 attempt, bool agree, bytes32 computedSha256) external {
        _liveTask(task, round);
        Round storage rd = _round(task, round);
        if (rd.phase != Phase.Verification) revert WrongPhase(task, round, Phase.Verification, rd.phase);
        if (attempt != rd.attempt) revert WrongAttempt(task, round, rd.attempt, attempt);
        TaskConfig storage cfg = _config[task];
        uint256 k = _verifierCount(cfg, rd.count);
        uint256 position = _verifierPosition(rd, round, rd.attempt, k, msg.sender);
        if (position == 0) revert NotVerifier(task, round, attempt, msg.sender);
        if (block.timestamp > rd.deadline) revert TooLate(task, round, rd.deadline, block.timestamp);
        uint16 bit = uint16(1 << (position - 1));
        if ((rd.agreeMask | rd.disagreeMask) & bit != 0) revert AlreadyAttested(task, round, attempt, msg.sender);
        if (agree && computedSha256 != rd.aggSha256) revert AgreementMismatch(task, round, rd.aggSha256, computedSha256);

        emit Attested(task, round, msg.sender, rd.epoch, rd.attempt, agree, computedSha256);
        uint256 quorum = cfg.quorum;
        if (agree) {
            rd.agreeMask |= bit;
            if (_popcount(rd.agreeMask) >= quorum) _finalize(task, round, rd, cfg, _candidate(rd, rd.attempt));
        } else {
            rd.disagreeMask |= bit;
            uint256 against = _popcount(rd.disagreeMask);
            // A quorum of disagreement rejects the leader's work (held against it); a minority that
            // only makes the quorum of agreement unreachable disputes the attempt (held against nobody).
            if (against >= quorum) _failAttempt(task, round, rd, cfg, FailReason.Rejected);
            else if (against > k - quorum) _failAttempt(task, round, rd, cfg, FailReason.Disputed);
        }
    }

    /// @notice Declare the current attempt failed once its deadline passed: a leader that did not
    ///         publish (LeaderTimeout, recorded against it) or verifiers that did not reach a
    ///         quorum (Unverified). The next candidate becomes leader; after the last one the
    ///         round reopens on the same parent. Anyone may call.
    ///         Emits AttemptFailed, then LeaderElected or RoundReopened.
    function timeout(uint256 task, uint256 round) external {
        _liveTask(task, round);
        Round storage rd = _round(task, round);
        Phase phase = rd.phase;
        if (phase != Phase.Aggregation && phase != Phase.Verification) {
            revert WrongPhase(task, round, Phase.Aggregation, phase);
        }
        if (block.timestamp <= rd.deadline) revert TooEarly(task, round, rd.deadline, block.timestamp);
        FailReason reason = phase == Phase.Aggregation ? FailReason.LeaderTimeout : FailReason.Unverified;
        _failAttempt(task, round, rd, _config[task], reason);
    }

    // ------------------------------------------------------------------ views

    /// @notice The configuration `task` was created with.
    function taskConfig(uint256 task) external view returns (TaskConfig memory) {
        _requireTask(task);
        return _config[task];
    }

    /// @notice Where `task` stands: its current round and the global model that round builds on.
    function taskState(uint256 task)
        public
        view
        returns (bool completed, uint32 currentRound, bytes32 globalSha256, string memory globalCid)
    {
        _requireTask(task);
        TaskState storage st = _state[task];
        if (st.completed && !st.cancelled) {
            globalCid = _round(task, st.currentRound).aggCid;
        } else if (st.currentRound == 1) {
            globalCid = _config[task].genesisCid;
        } else {
            globalCid = _round(task, st.currentRound - 1).aggCid;
        }
        return (st.completed, st.currentRound, st.globalSha256, globalCid);
    }

    /// @notice A snapshot of `round` of `task`; `leader` is zero before the election.
    function roundInfo(uint256 task, uint256 round) external view returns (RoundView memory) {
        return _roundView(_storedRound(task, round));
    }

    /// @notice What a member's node reads on every new block, in one call: taskState, the
    ///         roundInfo of the current round, whether `member` submitted to it, whether its
    ///         secret is in the round's seed, and whether it verifies the current attempt.
    function memberView(uint256 task, address member)
        external
        view
        returns (
            bool completed,
            uint32 currentRound,
            bytes32 globalSha256,
            string memory globalCid,
            RoundView memory round,
            bool submitted,
            bool revealed,
            bool verifier
        )
    {
        (completed, currentRound, globalSha256, globalCid) = taskState(task);
        Round storage rd = _round(task, currentRound);
        round = _roundView(rd);
        (submitted, revealed) = _membership(rd, currentRound, member);
        if (rd.phase == Phase.Aggregation || rd.phase == Phase.Verification) {
            uint256 k = _verifierCount(_config[task], rd.count);
            verifier = _verifierPosition(rd, currentRound, rd.attempt, k, member) != 0;
        }
    }

    function _membership(Round storage rd, uint256 round, address member)
        internal
        view
        returns (bool submitted, bool revealed)
    {
        uint256 slot = rd.slotOf[member];
        submitted = slot >> 32 == round;
        revealed = submitted && slot & REVEALED != 0;
    }

    function _roundView(Round storage rd) internal view returns (RoundView memory v) {
        v.phase = rd.phase;
        v.epoch = rd.epoch;
        v.attempt = rd.attempt;
        v.count = rd.count;
        v.agrees = uint16(_popcount(rd.agreeMask));
        v.disagrees = uint16(_popcount(rd.disagreeMask));
        v.deadline = rd.deadline;
        v.totalSamples = rd.totalSamples;
        if (rd.phase == Phase.Submission || rd.phase == Phase.Reveal) {
            v.reveals = rd.agreeMask;
            v.agrees = 0;
        }
        if (_elected(rd)) {
            v.seed = rd.seed;
            v.leader = _candidate(rd, rd.attempt);
        }
        v.inputsDigest = rd.inputsDigest;
        if (rd.phase == Phase.Verification || rd.phase == Phase.Finalized) {
            v.aggSha256 = rd.aggSha256;
            v.aggCid = rd.aggCid;
            v.includedHash = rd.includedHash;
        }
    }

    /// @notice The members that submitted in `round`, in submission order.
    function participants(uint256 task, uint256 round) external view returns (address[] memory out) {
        Round storage rd = _storedRound(task, round);
        out = new address[](rd.count);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = rd.participantAt[i];
        }
    }

    /// @notice Whether `who` submitted an update in `round`.
    function hasSubmitted(uint256 task, uint256 round, address who) external view returns (bool) {
        return _storedRound(task, round).slotOf[who] >> 32 == round;
    }

    /// @notice The full candidate order of the current election: leader of attempt i is element i.
    ///         Empty before the submission window closes.
    function electionOrder(uint256 task, uint256 round) external view returns (address[] memory out) {
        Round storage rd = _storedRound(task, round);
        if (!_elected(rd)) return out;
        out = new address[](rd.count);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = _candidate(rd, i);
        }
    }

    /// @notice The verifiers of `attempt`: the next verifiersPerRound candidates after its leader.
    function verifiersOf(uint256 task, uint256 round, uint256 attempt) external view returns (address[] memory) {
        Round storage rd = _storedRound(task, round);
        if (!_elected(rd)) return new address[](0);
        return _verifiers(rd, attempt, _verifierCount(_config[task], rd.count));
    }

    /// @notice The step of the seeded permutation for `n` candidates: the first number coprime
    ///         with `n` at or after 1 + r mod (n - 1). Public so anyone can recompute the order.
    function coprimeStep(uint256 r, uint256 n) public pure returns (uint256 s) {
        if (n <= 2) return 1;
        s = 1 + (r % (n - 1));
        while (_gcd(s, n) != 1) {
            s = s + 1 == n ? 1 : s + 1;
        }
    }

    // --------------------------------------------------------------- internal

    function _elected(Round storage rd) internal view returns (bool) {
        return rd.phase == Phase.Aggregation || rd.phase == Phase.Verification || rd.phase == Phase.Finalized;
    }

    function _requireTask(uint256 task) internal view {
        if (task >= taskCount) revert UnknownTask(task);
    }

    function _round(uint256 task, uint256 round) internal view returns (Round storage) {
        return _rounds[task][round & 1];
    }

    function _storedRound(uint256 task, uint256 round) internal view returns (Round storage rd) {
        _requireTask(task);
        rd = _round(task, round);
        if (rd.round != round || rd.phase == Phase.None) revert RoundNotStored(task, round);
    }

    function _liveTask(uint256 task, uint256 round) internal view returns (TaskState storage st) {
        _requireTask(task);
        st = _state[task];
        if (st.completed) revert TaskAlreadyCompleted(task);
        if (round != st.currentRound) revert WrongRound(task, st.currentRound, round);
    }

    function _openRound(uint256 task, uint256 round, TaskState storage st) internal {
        Round storage rd = _round(task, round);
        rd.phase = Phase.Submission;
        rd.epoch = 0;
        rd.attempt = 0;
        rd.count = 0;
        rd.agreeMask = 0;
        rd.disagreeMask = 0;
        rd.deadline = uint40(block.timestamp + _config[task].submissionWindow);
        rd.round = uint32(round);
        rd.totalSamples = 0;
        // Non-zero values up front keep the first submitter's cost equal to everyone else's.
        bytes32 start = keccak256(abi.encode(task, round, st.globalSha256));
        rd.inputsDigest = start;
        rd.revealAcc = start;
        emit RoundOpened(task, round, 0, st.globalSha256, rd.deadline);
    }

    /// @dev Both bitmaps cover exactly the round's participants, are disjoint, and include someone.
    function _checkInclusion(uint256 task, uint256 round, Round storage rd, bytes calldata included, bytes calldata unavailable)
        internal
        view
    {
        uint256 n = rd.count;
        uint256 len = (n + 7) / 8;
        if (included.length != len || unavailable.length != len) revert BadInclusion(task, round, n);
        bool any;
        for (uint256 i = 0; i < len; i++) {
            uint8 a = uint8(included[i]);
            uint8 b = uint8(unavailable[i]);
            if (a & b != 0) revert BadInclusion(task, round, n);
            if (i == len - 1 && n % 8 != 0 && (a | b) >> (n % 8) != 0) revert BadInclusion(task, round, n);
            if (a != 0) any = true;
        }
        if (!any) revert BadInclusion(task, round, n);
    }

    function _recordWithheld(uint256 task, uint256 round, Round storage rd, bytes calldata unavailable, address leader)
        internal
    {
        for (uint256 i = 0; i < unavailable.length; i++) {
            uint8 b = uint8(unavailable[i]);
            for (uint256 j = 0; b != 0; j++) {
                if (b & 1 == 1) {
                    address member = rd.participantAt[i * 8 + j];
                    withheldUpdates[member] += 1;
                    emit UpdateWithheld(task, round, member, leader);
                }
                b >>= 1;
            }
        }
    }

    function _startAttempt(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg) internal {
        rd.phase = Phase.Aggregation;
        rd.agreeMask = 0;
        rd.disagreeMask = 0;
        rd.deadline = uint40(block.timestamp + cfg.aggregationWindow);
        emit LeaderElected(
            task,
            round,
            _candidate(rd, rd.attempt),
            rd.epoch,
            rd.attempt,
            _verifiers(rd, rd.attempt, _verifierCount(cfg, rd.count)),
            rd.deadline
        );
    }

    function _failAttempt(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg, FailReason reason)
        internal
    {
        address leader = _candidate(rd, rd.attempt);
        if (reason == FailReason.LeaderTimeout || reason == FailReason.Rejected) failedLeaderships[leader] += 1;
        emit AttemptFailed(task, round, leader, rd.epoch, rd.attempt, reason);
        if (uint256(rd.attempt) + 1 < rd.count) {
            rd.attempt += 1;
            _startAttempt(task, round, rd, cfg);
        } else {
            _reopen(task, round, rd, cfg);
        }
    }

    /// @dev Every candidate failed, or too few revealed: reopen on the same parent, keeping every
    ///      update still in the round.
    function _reopen(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg) internal {
        rd.epoch += 1;
        rd.attempt = 0;
        rd.agreeMask = 0;
        rd.disagreeMask = 0;
        rd.phase = Phase.Submission;
        rd.deadline = uint40(block.timestamp + cfg.submissionWindow);
        emit RoundReopened(task, round, rd.epoch, _state[task].globalSha256, rd.deadline);
    }

    function _finalize(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg, address leader)
        internal
    {
        TaskState storage st = _state[task];
        rd.phase = Phase.Finalized;
        bytes32 parent = st.globalSha256;
        st.globalSha256 = rd.aggSha256;
        emit RoundFinalized(task, round, leader, rd.epoch, rd.attempt, parent, rd.aggCid, rd.aggSha256, cfg.ruleId);
        if (round >= cfg.maxRounds) {
            st.completed = true;
            emit TaskCompleted(task, round, st.globalSha256);
        } else {
            st.currentRound = uint32(round + 1);
            _openRound(task, round + 1, st);
        }
    }

    function _verifierCount(TaskConfig storage cfg, uint256 n) internal view returns (uint256) {
        uint256 k = cfg.verifiersPerRound;
        return n == 0 ? 0 : (k < n - 1 ? k : n - 1);
    }

    /// @dev Candidate i is participant (offset + i * step) mod n: a permutation since gcd(step, n) = 1.
    function _indexAt(Round storage rd, uint256 position) internal view returns (uint256) {
        uint256 n = rd.count;
        return (uint256(rd.offset) + (position % n) * uint256(rd.step)) % n;
    }

    function _candidate(Round storage rd, uint256 position) internal view returns (address) {
        return rd.participantAt[_indexAt(rd, position)];
    }

    function _verifiers(Round storage rd, uint256 attempt, uint256 k) internal view returns (address[] memory out) {
        out = new address[](k);
        for (uint256 j = 0; j < k; j++) {
            out[j] = _candidate(rd, attempt + 1 + j);
        }
    }

    /// @dev 1 + the position of `who` among the verifiers of `attempt`, or 0 if it is not one.
    function _verifierPosition(Round storage rd, uint256 round, uint256 attempt, uint256 k, address who)
        internal
        view
        returns (uint256)
    {
        uint256 slot = rd.slotOf[who];
        if (slot >> 32 != round) return 0;
        uint256 index = (slot & 0xffff) - 1;
        for (uint256 j = 0; j < k; j++) {
            if (_indexAt(rd, attempt + 1 + j) == index) return j + 1;
        }
        return 0;
    }

    function _popcount(uint16 x) internal pure returns (uint256 c) {
        while (x != 0) {
            x &= x - 1;
            c++;
        }
    }

    function _gcd(uint256 a, uint256 b) internal pure returns (uint256) {
        while (b != 0) {
            (a, b) = (b, a % b);
        }
        return a;
    }
}
