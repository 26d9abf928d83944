"""Pure statistics core of Visus: numpy and scipy only, never Django (an import-linter contract keeps it so).

Modules: ``proportions`` (sensitivity, specificity, PPV, NPV, accuracy with Wilson and Clopper-Pearson
intervals), ``roc`` (ROC curve, AUC with DeLong variance, paired DeLong test), ``kappa`` (Cohen's and Fleiss'
kappa), ``mrmc`` (Obuchowski-Rockette MRMC with Hillis ddf), ``power`` (OR-MRMC power and sample size),
``reads`` (the reads CSV of ``analyze_reads``) and ``report`` (the figures ``analyze_reads`` prints).
"""
