package sqlstore

// LeasedOrgs returns how many organizations s keeps lease state for.
func LeasedOrgs(s *Store) int {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return len(s.lease.orgs)
}
