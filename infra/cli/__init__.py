"""The `warden` command line: a thin layer over the functions of the other folders."""
