// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Consortium} from "./Consortium.sol";

/// @title FedLedger
/// @notice Runs federated-learning rounds for the members of a consortium: collects one update
///         hash per member per round, elects the leader that aggregates and the verifiers that
///         re-check it, fails over to the next candidate when a leader is silent or rejected, and
///         records the hash of every global model. Weights never touch the chain: every per-member
///         cost is constant in model size, and no per-round cost grows with the square of members.
/// @dev Events are the lineage record: each carries task, round, epoch, attempt, member/leader,
///      cid, sha256 and parent as they apply, so an auditor needs no extra calls.
contract FedLedger is Consortium {
    /// @notice Where a round stands. `Finalized` rounds are history; the task has moved on.
    enum Phase {
        None,
        Submission,
        Aggregation,
        Verification,
        Finalized
    }

    /// @notice Why a leader attempt ended without a global model.
    enum FailReason {
        LeaderTimeout,
        Rejected,
        Unverified
    }

    uint256 public constant MAX_PARTICIPANTS = 1024;
    uint256 public constant MAX_VERIFIERS = 16;
    uint256 public constant MAX_CID_BYTES = 128;

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
    }

    struct TaskState {
        bool completed;
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
        uint16 agreeMask; // bit j: verifier j of this attempt agreed
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
        mapping(uint256 => address) participantAt;
        mapping(address => uint256) slotOf; // (round << 32) | (index + 1)
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
    }

    /// @notice Number of tasks created; task ids are 0 .. taskCount-1.
    uint256 public taskCount;
    /// @notice How many leader attempts each member has lost by timeout or rejection.
    mapping(address => uint256) public failedLeaderships;

    mapping(uint256 => TaskConfig) internal _config;
    mapping(uint256 => TaskState) internal _state;
    mapping(uint256 => mapping(uint256 => Round)) internal _rounds; // task => round % 2 => record

    /// @notice A task was created; round 1 opens in the same transaction.
    event TaskCreated(uint256 indexed task, address indexed creator, TaskConfig config);
    /// @notice Round `round` of `task` accepts updates on top of `parent` until `deadline`.
    event RoundOpened(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 parent, uint64 deadline);
    /// @notice `member` submitted an update (`cid`, `sha256`) trained on `numSamples` samples from `parent`.
    event UpdateSubmitted(
        uint256 indexed task,
        uint256 indexed round,
        address indexed member,
        uint16 epoch,
        bytes32 parent,
        string cid,
        bytes32 sha256,
        uint64 numSamples
    );
    /// @notice The submission window closed with `participants` updates; `seed` fixes the candidate order.
    event SubmissionsClosed(
        uint256 indexed task,
        uint256 indexed round,
        uint16 epoch,
        bytes32 seed,
        uint16 participants,
        uint64 totalSamples,
        bytes32 inputsDigest
    );
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

    // ------------------------------------------------------------------ tasks

    /// @notice Create a federated training task and open its round 1 on the genesis model.
    ///         Admin only. Emits TaskCreated and RoundOpened.
    /// @return task The new task's id.
    function createTask(TaskConfig calldata cfg) external onlyAdmin returns (uint256 task) {
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
        if (cfg.verifiersPerRound > 0 && cfg.quorum == 0) revert InvalidArgument("quorum must be at least 1");
        if (cfg.maxRounds == 0) revert InvalidArgument("maxRounds must be at least 1");
    }

    // ----------------------------------------------------------------- rounds

    /// @notice Submit this member's update for `round`, trained from the current global model
    ///         `parent`. One per member per round. Members only. Emits UpdateSubmitted. The update
    ///         that fills the round (the maxParticipants-th) also closes the window and elects, as
    ///         closeSubmissions would: SubmissionsClosed and LeaderElected come in the same transaction.
    /// @param cid Where the update's safetensors bytes are on IPFS.
    /// @param sha256Hash The sha256 of exactly those bytes.
    /// @param numSamples How many training samples the update saw (its FedAvg weight).
    function submitUpdate(
        uint256 task,
        uint256 round,
        bytes32 parent,
        string calldata cid,
        bytes32 sha256Hash,
        uint64 numSamples
    ) external onlyMember {
        TaskState storage st = _liveTask(task, round);
        Round storage rd = _round(task, round);
        if (rd.phase != Phase.Submission) revert WrongPhase(task, round, Phase.Submission, rd.phase);
        if (parent != st.globalSha256) revert StaleParent(task, round, st.globalSha256, parent);
        if (rd.slotOf[msg.sender] >> 32 == round) revert DuplicateUpdate(task, round, msg.sender);
        uint16 count = rd.count;
        if (count >= _config[task].maxParticipants) revert RoundFull(task, round, _config[task].maxParticipants);
        if (bytes(cid).length == 0 || bytes(cid).length > MAX_CID_BYTES) revert InvalidArgument("cid must be 1-128 bytes");
        if (sha256Hash == bytes32(0)) revert InvalidArgument("sha256 is zero");
        if (numSamples == 0) revert InvalidArgument("numSamples is zero");

        rd.participantAt[count] = msg.sender;
        rd.slotOf[msg.sender] = (round << 32) | (uint256(count) + 1);
        rd.count = count + 1;
        rd.totalSamples += numSamples;
        rd.inputsDigest = keccak256(abi.encode(rd.inputsDigest, msg.sender, sha256Hash, numSamples));
        emit UpdateSubmitted(task, round, msg.sender, rd.epoch, parent, cid, sha256Hash, numSamples);
        if (count + 1 == _config[task].maxParticipants) _close(task, round, rd, _config[task]);
    }

    /// @notice Close the submission window and elect: fixes the whole candidate order from a
    ///         chain-derived seed. Anyone may call, once the deadline passed with at least
    ///         minParticipants updates (a round with maxParticipants updates closed itself).
    ///         Emits SubmissionsClosed and LeaderElected.
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
        _close(task, round, rd, cfg);
    }

    function _close(uint256 task, uint256 round, Round storage rd, TaskConfig storage cfg) internal {
        uint16 n = rd.count;
        bytes32 seed = keccak256(abi.encode(blockhash(block.number - 1), task, round, rd.epoch, rd.inputsDigest));
        rd.seed = seed;
        rd.offset = uint16(uint256(seed) % n);
        rd.step = uint16(coprimeStep(uint256(keccak256(abi.encode(seed))), n));
        rd.attempt = 0;
        emit SubmissionsClosed(task, round, rd.epoch, seed, n, rd.totalSamples, rd.inputsDigest);
        _startAttempt(task, round, rd, cfg);
    }

    /// @notice Publish the aggregate of this attempt. The current leader only, before its
    ///         deadline. Emits AggregatePublished, and RoundFinalized when the task has no verifiers.
    function publishAggregate(uint256 task, uint256 round, uint256 attempt, string calldata cid, bytes32 sha256Hash)
        external
        onlyMember
    {
        _liveTask(task, round);
        Round storage rd = _round(task, round);
        if (rd.phase != Phase.Aggregation) revert WrongPhase(task, round, Phase.Aggregation, rd.phase);
        if (attempt != rd.attempt) revert WrongAttempt(task, round, rd.attempt, attempt);
        address leader = _candidate(rd, rd.attempt);
        if (msg.sender != leader) revert NotLeader(task, round, leader, msg.sender);
        if (block.timestamp > rd.deadline) revert TooLate(task, round, rd.deadline, block.timestamp);
        if (bytes(cid).length == 0 || bytes(cid).length > MAX_CID_BYTES) revert InvalidArgument("cid must be 1-128 bytes");
        if (sha256Hash == bytes32(0)) revert InvalidArgument("sha256 is zero");

        rd.aggSha256 = sha256Hash;
        rd.aggCid = cid;
        _emitPublished(task, round, rd, leader);
        TaskConfig storage cfg = _config[task];
        if (_verifierCount(cfg, rd.count) == 0) {
            _finalize(task, round, rd, cfg, leader);
        } else {
            rd.phase = Phase.Verification;
            rd.deadline = uint40(block.timestamp + cfg.verificationWindow);
        }
    }

    /// @notice Attest to the published aggregate of `attempt` after recomputing it.
    ///         Verifiers of this attempt only, once each, before the verification deadline.
    ///         Emits Attested; then RoundFinalized on a quorum of agreement, or AttemptFailed
    ///         (and the next LeaderElected) once the quorum can no longer be reached.
    /// @param agree Whether the recomputed aggregate matches (bit for bit, or within the rule's tolerance).
    /// @param computedSha256 The sha256 of the verifier's own recomputation, kept for the audit.
    function attest(uint256 task, uint256 round, uint256 attempt, bool agree, bytes32 computedSha256)
        external
        onlyMember
    {
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

        emit Attested(task, round, msg.sender, rd.epoch, rd.attempt, agree, computedSha256);
        uint256 quorum = cfg.quorum < k ? cfg.quorum : k;
        if (agree) {
            rd.agreeMask |= bit;
            if (_popcount(rd.agreeMask) >= quorum) _finalize(task, round, rd, cfg, _candidate(rd, rd.attempt));
        } else {
            rd.disagreeMask |= bit;
            if (_popcount(rd.disagreeMask) > k - quorum) _failAttempt(task, round, rd, cfg, FailReason.Rejected);
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
        if (st.completed) {
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
    ///         roundInfo of the current round, whether `member` submitted to it, and whether it
    ///         verifies the current attempt.
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
            bool verifier
        )
    {
        (completed, currentRound, globalSha256, globalCid) = taskState(task);
        Round storage rd = _round(task, currentRound);
        round = _roundView(rd);
        submitted = rd.slotOf[member] >> 32 == currentRound;
        if (rd.phase == Phase.Aggregation || rd.phase == Phase.Verification) {
            uint256 k = _verifierCount(_config[task], rd.count);
            verifier = _verifierPosition(rd, currentRound, rd.attempt, k, member) != 0;
        }
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
        if (rd.phase != Phase.Submission) {
            v.seed = rd.seed;
            v.leader = _candidate(rd, rd.attempt);
        }
        v.inputsDigest = rd.inputsDigest;
        if (rd.phase == Phase.Verification || rd.phase == Phase.Finalized) {
            v.aggSha256 = rd.aggSha256;
            v.aggCid = rd.aggCid;
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
        if (rd.phase == Phase.Submission) return out;
        out = new address[](rd.count);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = _candidate(rd, i);
        }
    }

    /// @notice The verifiers of `attempt`: the next verifiersPerRound candidates after its leader.
    function verifiersOf(uint256 task, uint256 round, uint256 attempt) external view returns (address[] memory) {
        Round storage rd = _storedRound(task, round);
        if (rd.phase == Phase.Submission) return new address[](0);
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
        // A non-zero digest up front keeps the first submitter's cost equal to everyone else's.
        rd.inputsDigest = keccak256(abi.encode(task, round, st.globalSha256));
        emit RoundOpened(task, round, 0, st.globalSha256, rd.deadline);
    }

    function _emitPublished(uint256 task, uint256 round, Round storage rd, address leader) internal {
        emit AggregatePublished(
            task, round, leader, rd.epoch, rd.attempt, _state[task].globalSha256, rd.aggCid, rd.aggSha256, _config[task].ruleId
        );
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
        if (reason != FailReason.Unverified) failedLeaderships[leader] += 1;
        emit AttemptFailed(task, round, leader, rd.epoch, rd.attempt, reason);
        if (uint256(rd.attempt) + 1 < rd.count) {
            rd.attempt += 1;
            _startAttempt(task, round, rd, cfg);
        } else {
            // Every candidate failed: reopen on the same parent, keeping every submitted update.
            rd.epoch += 1;
            rd.attempt = 0;
            rd.agreeMask = 0;
            rd.disagreeMask = 0;
            rd.phase = Phase.Submission;
            rd.deadline = uint40(block.timestamp + cfg.submissionWindow);
            emit RoundReopened(task, round, rd.epoch, _state[task].globalSha256, rd.deadline);
        }
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
        uint256 index = (slot & 0xffffffff) - 1;
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
