// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title IFedLedger
/// @notice Every function, event and error of FedLedger (contracts/FedLedger.sol, which
///         documents each one), for clients in any language. Generated from the compiled ABI by
///         `make compile`; the tests check it matches. docs/protocol.md is the normative text.
/// @dev Enums travel as uint8; their members, in order:
///      Phase: None, Submission, Reveal, Aggregation, Verification, Finalized (0, 1, ...)
///      FailReason: LeaderTimeout, Rejected, Unverified, Disputed (0, 1, ...)
interface IFedLedger {
    struct RoundView {
        uint8 phase;
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
        uint16 reveals;
        bytes32 includedHash;
    }
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
    event AggregatePublished(uint256 indexed task, uint256 indexed round, address indexed leader, uint16 epoch, uint16 attempt, bytes32 parent, string cid, bytes32 sha256, bytes32 ruleId);
    event AttemptFailed(uint256 indexed task, uint256 indexed round, address indexed leader, uint16 epoch, uint16 attempt, uint8 /* FailReason */ reason);
    event Attested(uint256 indexed task, uint256 indexed round, address indexed verifier, uint16 epoch, uint16 attempt, bool agree, bytes32 computedSha256);
    event LeaderElected(uint256 indexed task, uint256 indexed round, address indexed leader, uint16 epoch, uint16 attempt, address[] verifiers, uint64 deadline);
    event MemberAdded(address indexed member, string name, address indexed by);
    event MemberRemoved(address indexed member, address indexed by);
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event RevealMissed(uint256 indexed task, uint256 indexed round, address indexed member, uint16 epoch);
    event RoundFinalized(uint256 indexed task, uint256 indexed round, address indexed leader, uint16 epoch, uint16 attempt, bytes32 parent, string cid, bytes32 sha256, bytes32 ruleId);
    event RoundOpened(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 parent, uint64 deadline);
    event RoundReopened(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 parent, uint64 deadline);
    event SecretRevealed(uint256 indexed task, uint256 indexed round, address indexed member, uint16 epoch, bytes32 secret, bytes32 nextCommitment);
    event SeedDrawn(uint256 indexed task, uint256 indexed round, uint16 epoch, bytes32 seed, uint16 participants);
    event SubmissionsClosed(uint256 indexed task, uint256 indexed round, uint16 epoch, uint16 participants, uint64 totalSamples, bytes32 inputsDigest, uint64 revealDeadline);
    event TaskCancelled(uint256 indexed task, uint256 round, bytes32 finalSha256, address indexed by);
    event TaskCompleted(uint256 indexed task, uint256 rounds, bytes32 finalSha256);
    event TaskCreated(uint256 indexed task, address indexed creator, TaskConfig config);
    event TaskUpdated(uint256 indexed task, uint256 round, uint16 minParticipants, uint16 maxParticipants, uint32 submissionWindow, uint32 aggregationWindow, uint32 verificationWindow, uint32 revealWindow, uint32 maxRounds);
    event UpdateSubmitted(uint256 indexed task, uint256 indexed round, address indexed member, uint16 epoch, bytes32 parent, string cid, bytes32 sha256, uint64 numSamples, bytes32 commitment, bytes32 secret);
    event UpdateWithheld(uint256 indexed task, uint256 indexed round, address indexed member, address leader);
    event UpdatesIncluded(uint256 indexed task, uint256 indexed round, uint16 epoch, uint16 attempt, bytes included, bytes unavailable);
    error AgreementMismatch(uint256 task, uint256 round, bytes32 published, bytes32 given);
    error AlreadyAttested(uint256 task, uint256 round, uint256 attempt, address verifier);
    error AlreadyMember(address who);
    error BadInclusion(uint256 task, uint256 round, uint256 participants);
    error BadReveal(uint256 task, uint256 round, address member);
    error DuplicateUpdate(uint256 task, uint256 round, address member);
    error InvalidArgument(string what);
    error NameTaken(string name, address holder);
    error NotAdmin(address who);
    error NotEnoughParticipants(uint256 task, uint256 round, uint256 have, uint256 need);
    error NotLeader(uint256 task, uint256 round, address leader, address caller);
    error NotMember(address who);
    error NotRevealing(uint256 task, uint256 round, address member);
    error NotVerifier(uint256 task, uint256 round, uint256 attempt, address caller);
    error OwnableInvalidOwner(address owner);
    error OwnableUnauthorizedAccount(address account);
    error RoundFull(uint256 task, uint256 round, uint256 maxParticipants);
    error RoundNotStored(uint256 task, uint256 round);
    error StaleParent(uint256 task, uint256 round, bytes32 expected, bytes32 given);
    error TaskAlreadyCompleted(uint256 task);
    error TooEarly(uint256 task, uint256 round, uint256 deadline, uint256 nowTs);
    error TooLate(uint256 task, uint256 round, uint256 deadline, uint256 nowTs);
    error TooManySamples(uint256 task, uint256 round, uint256 given, uint256 max);
    error UnknownTask(uint256 task);
    error WrongAttempt(uint256 task, uint256 round, uint256 expected, uint256 given);
    error WrongPhase(uint256 task, uint256 round, uint8 /* Phase */ expected, uint8 /* Phase */ actual);
    error WrongRound(uint256 task, uint256 expected, uint256 given);
    function MAX_CID_BYTES() external view returns (uint256);
    function MAX_PARTICIPANTS() external view returns (uint256);
    function MAX_SAMPLES_LIMIT() external view returns (uint256);
    function MAX_VERIFIERS() external view returns (uint256);
    function acceptOwnership() external;
    function addMember(address member, string calldata name) external;
    function admissionOf(address who) external view returns (uint64);
    function admissions() external view returns (uint64);
    function attest(uint256 task, uint256 round, uint256 attempt, bool agree, bytes32 computedSha256) external;
    function cancelTask(uint256 task) external;
    function closeReveals(uint256 task, uint256 round) external;
    function closeSubmissions(uint256 task, uint256 round) external;
    function coprimeStep(uint256 r, uint256 n) external pure returns (uint256 s);
    function createTask(TaskConfig calldata cfg) external returns (uint256 task);
    function electionOrder(uint256 task, uint256 round) external view returns (address[] memory out);
    function failedLeaderships(address) external view returns (uint256);
    function hasSubmitted(uint256 task, uint256 round, address who) external view returns (bool);
    function isMember(address who) external view returns (bool);
    function memberCount() external view returns (uint256);
    function memberInfo(address who) external view returns (bool active, string memory name, uint64 joinedAt);
    function memberView(uint256 task, address member) external view returns (bool completed, uint32 currentRound, bytes32 globalSha256, string memory globalCid, RoundView memory round, bool submitted, bool revealed, bool verifier);
    function members() external view returns (address[] memory);
    function missedReveals(address) external view returns (uint256);
    function owner() external view returns (address);
    function participants(uint256 task, uint256 round) external view returns (address[] memory out);
    function pendingCommitment(uint256, address) external view returns (bytes32);
    function pendingOwner() external view returns (address);
    function publishAggregate(uint256 task, uint256 round, uint256 attempt, string calldata cid, bytes32 sha256Hash, bytes calldata included, bytes calldata unavailable) external;
    function removeMember(address member) external;
    function renounceOwnership() external view;
    function reveal(uint256 task, uint256 round, bytes32 secret, bytes32 nextCommitment) external;
    function roundInfo(uint256 task, uint256 round) external view returns (RoundView memory);
    function submitUpdate(uint256 task, uint256 round, bytes32 parent, string calldata cid, bytes32 sha256Hash, uint64 numSamples, bytes32 commitment, bytes32 secret) external;
    function taskConfig(uint256 task) external view returns (TaskConfig memory);
    function taskCount() external view returns (uint256);
    function taskState(uint256 task) external view returns (bool completed, uint32 currentRound, bytes32 globalSha256, string memory globalCid);
    function timeout(uint256 task, uint256 round) external;
    function transferOwnership(address newOwner) external;
    function updateTask(uint256 task, uint16 minParticipants, uint16 maxParticipants, uint32 submissionWindow, uint32 aggregationWindow, uint32 verificationWindow, uint32 revealWindow, uint32 maxRounds) external;
    function verifiersOf(uint256 task, uint256 round, uint256 attempt) external view returns (address[] memory);
    function withheldUpdates(address) external view returns (uint256);
}
