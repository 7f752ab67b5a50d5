"""The contract between the operator and the programs in its pods (both planes import it;
it imports only `inferops.api`)."""
