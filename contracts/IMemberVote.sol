// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title IMemberVote
/// @notice Every function, event and error of MemberVote (contracts/MemberVote.sol, which
///         documents each one), for clients in any language. Generated from the compiled ABI by
///         `make compile`; the tests check it matches. docs/protocol.md is the normative text.
/// @dev Enums travel as uint8; their members, in order:
///      State: None, Active, Passed, Executed, Defeated, Expired (0, 1, ...)
interface IMemberVote {
    struct Proposal {
        address proposer;
        address target;
        uint64 createdAt;
        uint64 votingEnds;
        uint64 passedAt;
        uint64 executableAt;
        uint64 admissions;
        uint16 electorate;
        uint16 required;
        uint16 yes;
        uint16 no;
        bool executed;
        bool cancelled;
        bytes data;
        string description;
    }
    event ProposalCancelled(uint256 indexed id);
    event ProposalDefeated(uint256 indexed id);
    event ProposalExecuted(uint256 indexed id, address indexed by);
    event ProposalPassed(uint256 indexed id, uint64 executableAt);
    event Proposed(uint256 indexed id, address indexed proposer, address target, bytes data, string description, uint16 electorate, uint16 required);
    event RulesChanged(uint16 thresholdBps, uint32 delay, uint32 votingPeriod);
    event Voted(uint256 indexed id, address indexed voter, bool support, uint16 yes, uint16 no);
    error AddressEmptyCode(address target);
    error AlreadyVoted(uint256 id, address who);
    error FailedCall();
    error InsufficientBalance(uint256 balance, uint256 needed);
    error InvalidArgument(string what);
    error NotGovernable(address target, bytes4 selector);
    error NotInElectorate(uint256 id, address who);
    error NotMember(address who);
    error OnlyByVote(address caller);
    error TooEarly(uint256 id, uint256 executableAt, uint256 nowTs);
    error UnknownProposal(uint256 id);
    error WrongState(uint256 id, uint8 /* State */ expected, uint8 /* State */ actual);
    function MAX_DELAY() external view returns (uint32);
    function MAX_THRESHOLD_BPS() external view returns (uint16);
    function MAX_VOTING_PERIOD() external view returns (uint32);
    function MIN_THRESHOLD_BPS() external view returns (uint16);
    function acceptAdmin() external;
    function ballot(uint256 id, address voter) external view returns (uint8);
    function cancelProposal(uint256 id) external;
    function delay() external view returns (uint32);
    function execute(uint256 id) external returns (bytes memory result);
    function ledger() external view returns (address);
    function proposal(uint256 id) external view returns (Proposal memory);
    function proposalCount() external view returns (uint256);
    function propose(address target, bytes calldata data, string calldata description) external returns (uint256 id);
    function setRules(uint16 thresholdBps_, uint32 delay_, uint32 votingPeriod_) external;
    function state(uint256 id) external view returns (uint8 /* State */);
    function thresholdBps() external view returns (uint16);
    function vote(uint256 id, bool support) external;
    function votingPeriod() external view returns (uint32);
}
