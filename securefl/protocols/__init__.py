"""Protocol configurations; each makes the sans-I/O engines of one aggregation."""

from securefl.protocols.base import Protocol
from securefl.protocols.lattice import BFV
from securefl.protocols.paillier import Paillier
from securefl.protocols.plaintext import Plaintext
from securefl.protocols.secagg import SecAgg
from securefl.protocols.secret_sharing import SecretSharing
from securefl.protocols.validated import ValidatedSharing

__all__ = ["Protocol", "BFV", "Paillier", "Plaintext", "SecAgg", "SecretSharing", "ValidatedSharing"]
