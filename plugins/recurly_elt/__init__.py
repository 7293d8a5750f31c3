"""recurly-elt: Recurly billing data into a warehouse, MRR and health views, and out to marketing tools.

The package is imported by DAG tasks at run time, never at DAG parse time, and this module
imports nothing: Airflow's scheduler and DAG processor pay no cost for it.
"""

__version__ = "0.1.0"
