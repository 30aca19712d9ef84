// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Consortium
/// @notice The member registry of a fedledger consortium: which organisations (an address plus a
///         name) may take part, managed by one admin address. Every change emits an event.
abstract contract Consortium {
    struct Member {
        bool active;
        uint64 joinedAt;
        string name;
    }

    /// @notice The address allowed to admit and remove members and to create tasks.
    address public admin;
    /// @notice Number of currently admitted members.
    uint256 public memberCount;
    mapping(address => Member) internal _members;
    /// @dev keccak256(name) => the address first admitted under it: a name names one organisation
    ///      for good, so the lineage never shows two members under one name.
    mapping(bytes32 => address) internal _nameHolder;

    /// @notice Emitted when `member` is admitted under `name` by `by`.
    event MemberAdded(address indexed member, string name, address indexed by);
    /// @notice Emitted when `member` is removed by `by`.
    event MemberRemoved(address indexed member, address indexed by);
    /// @notice Emitted when the admin role moves from `previous` to `next`.
    event AdminTransferred(address indexed previous, address indexed next);

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

    constructor() {
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlyMember() {
        if (!_members[msg.sender].active) revert NotMember(msg.sender);
        _;
    }

    /// @notice Admit `member` under a human-readable `name`, which no other address was ever
    ///         admitted under (NameTaken). Admin only. Emits MemberAdded.
    function addMember(address member, string calldata name) external onlyAdmin {
        if (member == address(0)) revert InvalidArgument("member is the zero address");
        if (bytes(name).length == 0 || bytes(name).length > 64) revert InvalidArgument("name must be 1-64 bytes");
        if (_members[member].active) revert AlreadyMember(member);
        bytes32 key = keccak256(bytes(name));
        address holder = _nameHolder[key];
        if (holder != address(0) && holder != member) revert NameTaken(name, holder);
        _nameHolder[key] = member;
        _members[member] = Member({active: true, joinedAt: uint64(block.timestamp), name: name});
        memberCount += 1;
        emit MemberAdded(member, name, msg.sender);
    }

    /// @notice Remove `member`. Its past updates stay in the lineage record. Admin only.
    ///         Emits MemberRemoved.
    function removeMember(address member) external onlyAdmin {
        if (!_members[member].active) revert NotMember(member);
        _members[member].active = false;
        memberCount -= 1;
        emit MemberRemoved(member, msg.sender);
    }

    /// @notice Hand the admin role to `next`. Admin only. Emits AdminTransferred.
    function transferAdmin(address next) external onlyAdmin {
        if (next == address(0)) revert InvalidArgument("admin is the zero address");
        emit AdminTransferred(admin, next);
        admin = next;
    }

    /// @notice Whether `who` is an admitted member.
    function isMember(address who) external view returns (bool) {
        return _members[who].active;
    }

    /// @notice The name `who` was admitted under, and whether it is still a member.
    function memberInfo(address who) external view returns (bool active, string memory name, uint64 joinedAt) {
        Member storage m = _members[who];
        return (m.active, m.name, m.joinedAt);
    }
}
