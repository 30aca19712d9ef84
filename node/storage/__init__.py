"""Storage: the IPFS client (the RPC subset Kubo and js-ipfs share, and members' read-only
gateways), the dev IPFS daemon, repos on disk, and the model file format (deterministic
safetensors, strict reader). A peer trusts nothing it downloads until its sha256 matches the chain.
"""

from ..errors import StorageError
from .ipfs import GatewayClient, IntegrityError, IpfsClient, IpfsError, IpfsTimeout, IpfsUnavailable

__all__ = ["GatewayClient", "IntegrityError", "IpfsClient", "IpfsError", "IpfsTimeout", "IpfsUnavailable",
           "StorageError"]
