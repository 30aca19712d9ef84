// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {FedLedger} from "./FedLedger.sol";

/// @title MemberVote
/// @notice Governs a FedLedger by a vote of its members once bootstrap ends. Any member proposes
///         one call to the ledger (addMember, removeMember, createTask, updateTask, cancelTask) or to this
///         contract (setRules); members vote once each; a proposal passes when its yes votes reach
///         `thresholdBps` of the members at the time it was made, and any address executes it once
///         `delay` seconds have passed since. A proposal that can no longer pass is Defeated; one
///         that does not pass within `votingPeriod`, or is not executed within `votingPeriod` after
///         its delay, is Expired. A proposal keeps the delay and voting period in force when it was
///         made.
/// @dev    Bootstrap: the deployer admits the first members on the ledger, deploys this contract
///         and hands it the ledger's admin role (`transferOwnership`), and this contract accepts it
///         in `acceptAdmin`, which refuses a consortium of fewer than two members. From then on no
///         single key admits, removes or creates anything: the threshold is always more than half.
///         Votes are one per member (not token-weighted), and the electorate is fixed when the
///         proposal is made, so OpenZeppelin's Governor (token checkpoints, block-based voting
///         periods) does not fit; this contract uses OpenZeppelin's Ownable2Step on the ledger side
///         and Address.functionCall to execute, which bubbles the ledger's revert reason up.
contract MemberVote {
    enum State {
        None,
        Active, // open for votes
        Passed, // enough yes votes; executable after the delay
        Executed,
        Defeated, // enough no votes that it can no longer pass
        Expired, // not passed, or not executed, in time
        Cancelled // by a later vote (cancelProposal)
    }

    /// @dev Each proposal keeps the rules in force when it was made: a later change of the delay or
    ///      the voting period neither revives an expired proposal nor speeds up a passed one.
    struct Proposal {
        address proposer;
        address target; // the ledger or this contract
        uint64 createdAt;
        uint64 votingEnds; // createdAt + votingPeriod
        uint64 passedAt; // 0 until it passes
        uint64 executableAt; // passedAt + delay; executable until executableAt + votingPeriod
        uint64 admissions; // the ledger's admission count when it was made: later admissions do not vote
        uint16 electorate; // members when it was made
        uint16 required; // yes votes it needs
        uint16 yes;
        uint16 no;
        bool executed;
        bool cancelled;
        bytes data; // the call: selector and ABI-encoded arguments
        string description;
    }

    /// @notice Thresholds are in basis points of the electorate; more than half is always required.
    uint16 public constant MIN_THRESHOLD_BPS = 5001;
    uint16 public constant MAX_THRESHOLD_BPS = 10000;
    /// @notice Rules that could freeze the vote for good are refused: a delay above 30 days or a
    ///         voting period above a year.
    uint32 public constant MAX_DELAY = 30 days;
    uint32 public constant MAX_VOTING_PERIOD = 365 days;

    FedLedger public immutable ledger;
    uint16 public thresholdBps;
    uint32 public delay;
    uint32 public votingPeriod;
    uint256 public proposalCount;

    mapping(uint256 => Proposal) internal _proposals;
    mapping(uint256 => mapping(address => uint8)) internal _ballot; // 1: yes, 2: no

    event RulesChanged(uint16 thresholdBps, uint32 delay, uint32 votingPeriod);
    event Proposed(
        uint256 indexed id, address indexed proposer, address target, bytes data, string description, uint16 electorate,
        uint16 required
    );
    event Voted(uint256 indexed id, address indexed voter, bool support, uint16 yes, uint16 no);
    event ProposalPassed(uint256 indexed id, uint64 executableAt);
    event ProposalDefeated(uint256 indexed id);
    event ProposalExecuted(uint256 indexed id, address indexed by);
    event ProposalCancelled(uint256 indexed id);

    /// @notice The caller is not a member of the ledger's consortium.
    error NotMember(address who);
    /// @notice `who` joined after proposal `id` was made: it is not in that proposal's electorate.
    error NotInElectorate(uint256 id, address who);
    /// @notice No proposal has id `id`.
    error UnknownProposal(uint256 id);
    /// @notice Proposal `id` is in state `actual`; the call needs `expected`.
    error WrongState(uint256 id, State expected, State actual);
    /// @notice `who` already voted on proposal `id`.
    error AlreadyVoted(uint256 id, address who);
    /// @notice Proposal `id` can be executed from `executableAt` (block time `nowTs`).
    error TooEarly(uint256 id, uint256 executableAt, uint256 nowTs);
    /// @notice The proposed call is not one a vote may make; `selector` names it.
    error NotGovernable(address target, bytes4 selector);
    /// @notice Only a passed proposal (a call from this contract to itself) may change the rules.
    error OnlyByVote(address caller);
    /// @notice An argument is out of range; `what` names it.
    error InvalidArgument(string what);

    constructor(FedLedger ledger_, uint16 thresholdBps_, uint32 delay_, uint32 votingPeriod_) {
        if (address(ledger_).code.length == 0) revert InvalidArgument("ledger is not a contract");
        ledger = ledger_;
        _setRules(thresholdBps_, delay_, votingPeriod_);
    }

    modifier onlyMember() {
        if (!ledger.isMember(msg.sender)) revert NotMember(msg.sender);
        _;
    }

    /// @notice End bootstrap: accept the ledger's admin role its admin offered this contract.
    ///         Anyone may call; refused while the consortium has fewer than two members.
    function acceptAdmin() external {
        if (ledger.memberCount() < 2) revert InvalidArgument("a vote needs at least two members");
        ledger.acceptOwnership();
    }

    /// @notice Propose `data`, a call to `target` (the ledger or this contract). Members only.
    ///         The proposer's yes vote is counted. Emits Proposed and Voted.
    function propose(address target, bytes calldata data, string calldata description)
        external
        onlyMember
        returns (uint256 id)
    {
        if (data.length < 4) revert InvalidArgument("data must start with a selector");
        bytes4 selector = bytes4(data[:4]);
        bool governable = target == address(ledger)
            ? selector == ledger.addMember.selector || selector == ledger.removeMember.selector
                || selector == ledger.createTask.selector || selector == ledger.cancelTask.selector
                || selector == ledger.updateTask.selector
            : target == address(this) && (selector == this.setRules.selector || selector == this.cancelProposal.selector);
        if (!governable) revert NotGovernable(target, selector);
        if (bytes(description).length > 1024) revert InvalidArgument("description exceeds 1024 bytes");
        uint256 electorate = ledger.memberCount();
        id = proposalCount++;
        Proposal storage p = _proposals[id];
        p.proposer = msg.sender;
        p.target = target;
        p.createdAt = uint64(block.timestamp);
        p.admissions = ledger.admissions();
        p.votingEnds = uint64(block.timestamp + votingPeriod);
        p.electorate = uint16(electorate);
        p.required = uint16((electorate * thresholdBps + 9999) / 10000);
        p.data = data;
        p.description = description;
        emit Proposed(id, msg.sender, target, data, description, p.electorate, p.required);
        _vote(id, p, true);
    }

    /// @notice Vote on an active proposal. Members that were members when it was made, once each.
    ///         Emits Voted, and ProposalPassed or ProposalDefeated when the vote decides it.
    function vote(uint256 id, bool support) external onlyMember {
        Proposal storage p = _proposal(id);
        State s = _state(p);
        if (s != State.Active) revert WrongState(id, State.Active, s);
        if (ledger.admissionOf(msg.sender) > p.admissions) revert NotInElectorate(id, msg.sender);
        _vote(id, p, support);
    }

    function _vote(uint256 id, Proposal storage p, bool support) internal {
        if (_ballot[id][msg.sender] != 0) revert AlreadyVoted(id, msg.sender);
        _ballot[id][msg.sender] = support ? 1 : 2;
        if (support) p.yes += 1;
        else p.no += 1;
        emit Voted(id, msg.sender, support, p.yes, p.no);
        if (p.yes >= p.required) {
            p.passedAt = uint64(block.timestamp);
            p.executableAt = uint64(block.timestamp + delay);
            emit ProposalPassed(id, p.executableAt);
        } else if (p.no > p.electorate - p.required) {
            emit ProposalDefeated(id);
        }
    }

    /// @notice Make the call of a passed proposal once its delay is over. Members only (a member
    ///         removed since cannot run what is left pending). Reverts with the ledger's own error
    ///         when the call fails (the proposal stays Passed).
    function execute(uint256 id) external onlyMember returns (bytes memory result) {
        Proposal storage p = _proposal(id);
        State s = _state(p);
        if (s != State.Passed) revert WrongState(id, State.Passed, s);
        if (block.timestamp < p.executableAt) revert TooEarly(id, p.executableAt, block.timestamp);
        p.executed = true;
        emit ProposalExecuted(id, msg.sender);
        result = Address.functionCall(p.target, p.data);
    }

    /// @notice Withdraw proposal `id` while it is active or passed (a stale duplicate, a mistake).
    ///         Only through a passed proposal. Emits ProposalCancelled.
    function cancelProposal(uint256 id) external {
        if (msg.sender != address(this)) revert OnlyByVote(msg.sender);
        Proposal storage p = _proposal(id);
        State s = _state(p);
        if (s != State.Active && s != State.Passed) revert WrongState(id, State.Active, s);
        p.cancelled = true;
        emit ProposalCancelled(id);
    }

    /// @notice Change the threshold (basis points, 5001-10000), the delay before execution and the
    ///         voting period (seconds, at least 60). Only through a passed proposal.
    function setRules(uint16 thresholdBps_, uint32 delay_, uint32 votingPeriod_) external {
        if (msg.sender != address(this)) revert OnlyByVote(msg.sender);
        _setRules(thresholdBps_, delay_, votingPeriod_);
    }

    function _setRules(uint16 thresholdBps_, uint32 delay_, uint32 votingPeriod_) internal {
        if (thresholdBps_ < MIN_THRESHOLD_BPS || thresholdBps_ > MAX_THRESHOLD_BPS) {
            revert InvalidArgument("thresholdBps must be 5001-10000");
        }
        if (votingPeriod_ < 60 || votingPeriod_ > MAX_VOTING_PERIOD) {
            revert InvalidArgument("votingPeriod must be 60 seconds to 365 days");
        }
        if (delay_ > MAX_DELAY) revert InvalidArgument("delay must be at most 30 days");
        thresholdBps = thresholdBps_;
        delay = delay_;
        votingPeriod = votingPeriod_;
        emit RulesChanged(thresholdBps_, delay_, votingPeriod_);
    }

    // ------------------------------------------------------------------ views

    /// @notice Where proposal `id` stands.
    function state(uint256 id) external view returns (State) {
        return _state(_proposal(id));
    }

    /// @notice Everything about proposal `id`.
    function proposal(uint256 id) external view returns (Proposal memory) {
        return _proposal(id);
    }

    /// @notice How `voter` voted on `id`: 0 not at all, 1 yes, 2 no.
    function ballot(uint256 id, address voter) external view returns (uint8) {
        _proposal(id);
        return _ballot[id][voter];
    }

    function _proposal(uint256 id) internal view returns (Proposal storage p) {
        if (id >= proposalCount) revert UnknownProposal(id);
        p = _proposals[id];
    }

    function _state(Proposal storage p) internal view returns (State) {
        if (p.executed) return State.Executed;
        if (p.cancelled) return State.Cancelled;
        if (p.passedAt != 0) {
            uint256 window = p.votingEnds - p.createdAt;
            return block.timestamp > uint256(p.executableAt) + window ? State.Expired : State.Passed;
        }
        if (p.no > p.electorate - p.required) return State.Defeated;
        return block.timestamp > p.votingEnds ? State.Expired : State.Active;
    }
}
