"""Data-plane programs shipped in the same image: the reference model server and the agent."""
