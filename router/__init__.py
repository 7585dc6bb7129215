"""The public HTTP router: group lookup, edge choice, /asset_stream, /asset_state."""
