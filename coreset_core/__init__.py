"""coreset-studio's core: unsupervised coreset selection by contrastive learning.

Follows Ju et al. 2022, "Extending Contrastive Learning to Unsupervised Coreset
Selection" (arXiv 2103.03574). Never imports streamlit and never prints.
"""

__version__ = "0.1.0"
