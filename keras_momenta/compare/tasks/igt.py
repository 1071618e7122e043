"""IGT (Arnold et al. 2019): its experiments as runner tasks."""

TASKS = []
