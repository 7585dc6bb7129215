"""The router package: the splitter (data job) and the public HTTP router."""
