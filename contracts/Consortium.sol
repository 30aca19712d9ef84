// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/// @title Consortium
/// @notice The member registry of a fedledger consortium: which organisations (an address plus a
///         name) may take part. One address, the admin (`owner()`: the deployer during bootstrap,
///         the MemberVote contract after), admits and removes members and
///         creates and cancels tasks. During bootstrap that is the deployer's key; bootstrap ends
///         when the admin role moves to the consortium's MemberVote contract, after which only a
///         vote of the members changes anything. The role moves in two steps (OpenZeppelin
///         Ownable2Step: the new admin must accept), so a typo cannot lose it, and it cannot be
///         renounced. Every change emits an event; `members()` enumerates the current members.
abstract contract Consortium is Ownable2Step {
    using EnumerableSet for EnumerableSet.AddressSet;

    struct Member {
        bool active;
        uint64 joinedAt;
        uint64 admission; // this admission's number: 1 for the first ever, then one more each time
        string name;
    }

    /// @notice How many admissions there have been (a member admitted again counts again): a vote
    ///         fixes its electorate by this number, which blocks of one second cannot blur.
    uint64 public admissions;

    mapping(address => Member) internal _members;
    EnumerableSet.AddressSet internal _active;
    /// @dev keccak256(name) => the address first admitted under it: a name names one organisation
    ///      for good, so the lineage never shows two members under one name.
    mapping(bytes32 => address) internal _nameHolder;

    /// @notice Emitted when `member` is admitted under `name` by `by`.
    event MemberAdded(address indexed member, string name, address indexed by);
    /// @notice Emitted when `member` is removed by `by`.
    event MemberRemoved(address indexed member, address indexed by);

    /// @notice The caller is not the admin.
    error NotAdmin(address who);
    /// @notice The caller (or the named address) is not an admitted member.
    error NotMember(address who);
    /// @notice The address is already an admitted member.
    error AlreadyMember(address who);
    /// @notice Another address was admitted under `name` (names are never reused).
    error NameTaken(string name, address holder);
    /// @notice An argument is out of range; `what` names it.
    error InvalidArgument(string what);

    constructor() Ownable(msg.sender) {}

    /// @dev OpenZeppelin's onlyOwner, reverting with this contract's own error name.
    function _checkOwner() internal view override {
        if (owner() != msg.sender) revert NotAdmin(msg.sender);
    }

    modifier onlyMember() {
        if (!_members[msg.sender].active) revert NotMember(msg.sender);
        _;
    }

    /// @notice Admit `member` under a human-readable `name`, which no other address was ever
    ///         admitted under (NameTaken). Admin only. Emits MemberAdded.
    function addMember(address member, string calldata name) external onlyOwner {
        if (member == address(0)) revert InvalidArgument("member is the zero address");
        if (bytes(name).length == 0 || bytes(name).length > 64) revert InvalidArgument("name must be 1-64 bytes");
        if (_members[member].active) revert AlreadyMember(member);
        bytes32 key = keccak256(bytes(name));
        address holder = _nameHolder[key];
        if (holder != address(0) && holder != member) revert NameTaken(name, holder);
        _nameHolder[key] = member;
        uint64 number = admissions + 1;
        admissions = number;
        _members[member] = Member({active: true, joinedAt: uint64(block.timestamp), admission: number, name: name});
        _active.add(member);
        emit MemberAdded(member, name, msg.sender);
    }

    /// @notice Remove `member`. Its past updates stay in the lineage record, and it still finishes
    ///         the duties of rounds it already entered (reveal, lead, verify): removal never strands a
    ///         round in progress. Admin only. Emits MemberRemoved.
    function removeMember(address member) external onlyOwner {
        if (!_members[member].active) revert NotMember(member);
        // Governed by a vote (the admin is a contract): one member left would rule alone.
        if (owner().code.length > 0 && _active.length() <= 2) {
            revert InvalidArgument("at least two members must remain");
        }
        _members[member].active = false;
        _active.remove(member);
        emit MemberRemoved(member, msg.sender);
    }

    /// @notice The admin role cannot be given up: a consortium without one could never change again.
    function renounceOwnership() public view override onlyOwner {
        revert InvalidArgument("the admin role cannot be renounced");
    }

    /// @notice Number of currently admitted members.
    function memberCount() external view returns (uint256) {
        return _active.length();
    }

    /// @notice The current members, in no fixed order (removal moves the last one into the gap).
    function members() external view returns (address[] memory) {
        return _active.values();
    }

    /// @notice Whether `who` is an admitted member.
    function isMember(address who) external view returns (bool) {
        return _members[who].active;
    }

    /// @notice The number of `who`'s latest admission (0: never admitted).
    function admissionOf(address who) external view returns (uint64) {
        return _members[who].admission;
    }

    /// @notice The name `who` was admitted under, whether it is still a member, and when it joined.
    function memberInfo(address who) external view returns (bool active, string memory name, uint64 joinedAt) {
        Member storage m = _members[who];
        return (m.active, m.name, m.joinedAt);
    }
}
