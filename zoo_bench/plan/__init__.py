"""Planning a grid: a suite file read and checked, expanded into trials with their ids, the nested
subsets of each size, the regression gates. Nothing here trains or reads results."""
